// The official Node SDK against botkit's platform catalogues: ready-made abilities,
// secret types, the README's sections as docs, and reports over the account's rows.
// Run by tests/test_platform.py with BOTKIT_URL and BOTKIT_TOKEN.
import assert from 'node:assert/strict'
import { ChatBotKit } from '@chatbotkit/sdk'

const client = new ChatBotKit({ baseUrl: process.env.BOTKIT_URL, secret: process.env.BOTKIT_TOKEN })

let step = ''
async function check(name, fn) {
  step = name
  await fn()
  console.log(`ok ${name}`)
}

async function collect(iterable) {
  const out = []
  for await (const item of iterable) out.push(item)
  return out
}

try {
  await check('abilities: list, stream, search, and a copy into a skillset', async () => {
    const page = await client.platform.ability.list({ take: 2 })
    assert.equal(page.items.length, 2)
    const next = await client.platform.ability.list({ take: 100, cursor: page.cursor })
    const streamed = await collect(client.platform.ability.list().stream())
    assert.equal(streamed.length, page.items.length + next.items.length)
    const found = await client.platform.ability.search({ search: 'another bot' })
    assert.equal(found.items[0].id, 'ask-another-bot')
    assert.ok(found.items[0].score > 0 && found.items[0].excerpt)
    const web = streamed.map((e) => e.data).find((a) => a.id === 'fetch-web-page')
    const skillset = await client.skillset.create({})
    const copied = await client.skillset.ability.create(skillset.id, { name: web.name, instruction: web.instruction })
    assert.ok(copied.id)
  })

  await check('action kinds', async () => {
    const kinds = (await client.platform.action.list()).items.map((a) => a.id)
    assert.deepEqual([...kinds].sort(), ['bot/call', 'dataset/search', 'fetch'])
  })

  await check('secret types: list and search', async () => {
    const types = (await client.platform.secret.list({ take: 100 })).items.map((s) => s.type)
    assert.ok(types.includes('bearer') && types.includes('basic'))
    const found = await client.platform.secret.search({ search: 'oauth access token' })
    assert.equal(found.items[0].type, 'oauth')
  })

  await check('docs: the README sections, listed, searched and fetched', async () => {
    const docs = (await client.platform.doc.list({ take: 100 })).items
    assert.ok(docs.some((d) => d.id === 'configuration'))
    const doc = await client.platform.doc.fetch('the-two-commands')
    assert.match(doc.content, /make run/)
    const found = await client.platform.doc.search({ search: 'rate limits' })
    assert.ok(found.items.length > 0)
    await assert.rejects(client.platform.doc.fetch('nothing-has-this'), (e) => e.code === 'NOT_FOUND')
  })

  await check('reports: list, generate, generateTyped, generateBatch', async () => {
    await client.conversation.create({ messages: [{ type: 'user', text: 'hello' }] })
    const reports = (await client.platform.report.list()).items
    assert.ok(reports.length >= 5)
    const users = await client.platform.report.generate('clr3m5n8k000708jq4l1m2n8h', { periodDays: 7 })
    assert.equal(users.value, 1)
    assert.equal(users.breakdown.length, 7)
    const typed = await client.platform.report.generateTyped('clr3m5n8k000508jq2j9k0l6f', { periodDays: 1 })
    assert.equal(typed.value, 1)
    const batch = await client.platform.report.generateBatch({
      clr3m5n8k000608jq3k0l1m7g: { periodDays: 30 },
      'tokens-per-day': {},
    })
    assert.equal(batch.clr3m5n8k000608jq3k0l1m7g.value, 1)
    assert.equal(batch['tokens-per-day'].value, 0)
    await assert.rejects(client.platform.report.generate('nothing', {}), (e) => e.code === 'NOT_FOUND')
  })
} catch (error) {
  console.error(`FAILED at ${step}:`, error)
  process.exit(1)
}
