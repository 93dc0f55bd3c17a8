// The official Node SDK (@chatbotkit/sdk, pinned in package.json) against a real
// botkit server: only the base URL differs from an app written for the hosted API.
// Run by tests/test_sdk.py with BOTKIT_URL (the server's root) and BOTKIT_TOKEN; every
// step asserts, and the first failure exits non-zero with the step's name.
import assert from 'node:assert/strict'
import { ChatBotKit } from '@chatbotkit/sdk'

const baseUrl = process.env.BOTKIT_URL
const secret = process.env.BOTKIT_TOKEN
const client = new ChatBotKit({ baseUrl, secret })

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

async function pageToTheEnd(list, order) {
  // the loop SDK users write: pass the cursor back until a page is empty
  const seen = []
  let cursor
  for (let i = 0; i < 50; i++) {
    const page = await list({ take: 2, order, ...(cursor ? { cursor } : {}) })
    assert.equal(typeof page.cursor, 'string')
    if (page.items.length === 0) return seen
    seen.push(...page.items.map((item) => item.id))
    cursor = page.cursor
  }
  throw new Error('paging never ended')
}

const tag = `node-${Date.now()}`

try {
  let botId
  await check('bot CRUD', async () => {
    const created = await client.bot.create({ name: 'Ada', backstory: 'You are helpful.', meta: { tag } })
    botId = created.id
    assert.equal((await client.bot.fetch(botId)).name, 'Ada')
    await client.bot.update(botId, { name: 'Ada Lovelace' })
    assert.equal((await client.bot.fetch(botId)).name, 'Ada Lovelace')
    const gone = await client.bot.create({ name: 'gone' })
    await client.bot.delete(gone.id)
    await assert.rejects(client.bot.fetch(gone.id), (e) => e.code === 'NOT_FOUND')
  })

  await check('lists paged to the end in both orders, meta filters, JSONL stream', async () => {
    for (let i = 0; i < 4; i++) await client.bot.create({ name: `b${i}`, meta: { tag, i: String(i) } })
    const desc = await pageToTheEnd((q) => client.bot.list({ ...q, meta: { tag } }), 'desc')
    const asc = await pageToTheEnd((q) => client.bot.list({ ...q, meta: { tag } }), 'asc')
    assert.equal(desc.length, 5)
    assert.deepEqual(asc, [...desc].reverse())
    const one = await client.bot.list({ meta: { tag, i: '2' } })
    assert.equal(one.items.length, 1)
    const streamed = await collect(client.bot.list({ meta: { tag } }).stream())
    assert.deepEqual(
      streamed.map((e) => e.type),
      desc.map(() => 'item')
    )
    assert.deepEqual(
      streamed.map((e) => e.data.id),
      desc
    )
  })

  let datasetId
  await check('datasets, records and search', async () => {
    datasetId = (await client.dataset.create({ name: 'handbook' })).id
    await client.dataset.record.create(datasetId, { text: 'Refunds are possible within 30 days of purchase.' })
    await client.dataset.record.create(datasetId, { text: 'Our office is open Monday to Friday.' })
    const records = await client.dataset.record.list(datasetId, {})
    assert.equal(records.items.length, 2)
    const found = await client.dataset.search(datasetId, 'refund')
    assert.match(found.records[0].text, /Refunds/)
  })

  await check('stateless completion, JSON and stream', async () => {
    const body = { messages: [{ type: 'user', text: 'When can I get a refund?' }], datasetId }
    const answer = await client.conversation.complete(null, body)
    assert.match(answer.text, /30 days/)
    assert.equal(answer.end.reason, 'stop')
    const events = await collect(client.conversation.complete(null, body).stream())
    const types = events.map((e) => e.type)
    assert.ok(types.includes('token'))
    assert.equal(types.at(-1), 'result')
    assert.equal(events.at(-1).data.text, answer.text)
  })

  let conversationId
  await check('conversations: complete, send and receive', async () => {
    await client.bot.update(botId, { datasetId })
    conversationId = (await client.conversation.create({ botId })).id
    const answer = await client.conversation.complete(conversationId, { text: 'When can I get a refund?' })
    assert.match(answer.text, /30 days/)
    const streamed = await collect(client.conversation.complete(conversationId, { text: 'And the office?' }).stream())
    assert.equal(streamed.at(-1).type, 'result')
    const sent = await client.conversation.send(conversationId, { text: 'Is it open on Monday?' })
    assert.ok(sent.id)
    const received = await client.conversation.receive(conversationId, {})
    assert.ok(received.text.length > 0)
    const messages = await client.conversation.message.list(conversationId, {})
    assert.equal(messages.items.length, 6)
  })

  await check('dispatch, channels and the event log', async () => {
    const { channelId } = await client.conversation.dispatch(conversationId, { text: 'Refund?' })
    assert.ok(channelId.startsWith(`${conversationId}:`))
    const published = []
    for await (const e of client.channel.subscribe(channelId, { historyLength: 1000 }).stream()) {
      assert.equal(e.type, 'message')
      published.push(e.data)
      if (['result', 'error'].includes(e.data.type)) break
    }
    assert.equal(published[0].type, 'completeBegin')
    assert.equal(published.at(-1).type, 'result')
    assert.match(published.at(-1).data.text, /30 days/)
    const channel = `${tag}-channel-0001`
    await client.channel.publish(channel, { message: { hello: 'world' } })
    for await (const e of client.channel.subscribe(channel, { historyLength: 1 }).stream()) {
      assert.deepEqual(e, { type: 'message', data: { hello: 'world' } })
      break
    }
    const logged = await client.event.log.list({ take: 100 })
    assert.ok(logged.items.some((e) => e.type === 'bot.create' && e.botId === botId))
    assert.ok(logged.items.some((e) => e.type === 'completion.finish' && e.conversationId === conversationId))
    const exported = await collect(client.event.log.export({}).stream())
    assert.ok(exported.length >= logged.items.length && exported.every((e) => e.type === 'item'))
    for await (const e of client.event.log.subscribe({ historyLength: 1 }).stream()) {
      assert.equal(e.type, 'item')
      assert.ok(e.data.id && e.data.type && e.data.createdAt)
      break
    }
  })

  await check('session tokens', async () => {
    const session = await client.conversation.session.create(conversationId, { durationInSeconds: 600 })
    assert.equal(session.id, conversationId)
    const widget = new ChatBotKit({ baseUrl, secret: session.token })
    const answer = await widget.conversation.complete(conversationId, { text: 'Refund?' })
    assert.match(answer.text, /30 days/)
    await assert.rejects(widget.bot.list(), (e) => e.code === 'NOT_AUTHORIZED')
    const botSession = await client.bot.session.create(botId, {})
    assert.equal(botSession.id, botId)
    assert.ok(botSession.conversationId && botSession.token && botSession.expiresAt)
  })

  await check('partner users, tokens and run-as (id and child email)', async () => {
    const email = `${tag}@example.com`
    const child = await client.partner.user.create({ name: 'Customer A', email, limits: { bots: 3 } })
    const fetched = await client.partner.user.fetch(child.id)
    assert.equal(fetched.limits.bots, 3)
    assert.equal(Number.isInteger(fetched.limits.bots), true)
    const asChild = new ChatBotKit({ baseUrl, secret, runAsUserId: child.id })
    const theirs = await asChild.bot.create({ name: 'their bot' })
    await assert.rejects(client.bot.fetch(theirs.id), (e) => e.code === 'NOT_FOUND')
    const byEmail = new ChatBotKit({ baseUrl, secret, runAsChildUserEmail: email })
    assert.equal((await byEmail.bot.fetch(theirs.id)).name, 'their bot')
    const stranger = new ChatBotKit({ baseUrl, secret, runAsUserId: '01m84tf0w9f3se992gd2fj0kwb' })
    await assert.rejects(stranger.bot.list(), (e) => e.code === 'NOT_AUTHORIZED')
    const token = await client.partner.user.token.create(child.id, { name: 'their app' })
    const own = new ChatBotKit({ baseUrl, secret: token.token })
    assert.equal((await own.bot.list()).items.length, 1)
    const users = await pageToTheEnd((q) => client.partner.user.list(q), 'asc')
    assert.ok(users.includes(child.id))
    await client.partner.user.delete(child.id)
    await assert.rejects(own.bot.list(), (e) => e.code === 'NOT_AUTHENTICATED')
  })

  await check('the other families: skillsets, contacts, secrets, memories, tasks, files, usage, platform', async () => {
    const skillset = await client.skillset.create({ name: 'tools' })
    await client.skillset.ability.create(skillset.id, { name: 'a', description: 'd', instruction: 'i' })
    assert.equal((await client.skillset.ability.list(skillset.id, {})).items.length, 1)
    const contact = await client.contact.create({ name: 'Ann', email: 'ann@example.com' })
    assert.equal((await client.contact.fetch(contact.id)).name, 'Ann')
    const ensured = await client.contact.ensure({ fingerprint: `${tag}-fp` })
    assert.equal((await client.contact.ensure({ fingerprint: `${tag}-fp` })).id, ensured.id)
    const s = await client.secret.create({ name: 'api key', value: 'sk-1' })
    assert.equal((await client.secret.fetch(s.id)).name, 'api key')
    const memory = await client.memory.create({ text: 'Ann likes tea.' })
    assert.equal((await client.memory.fetch(memory.id)).text, 'Ann likes tea.')
    const task = await client.task.create({ name: 't', description: 'do it', botId })
    assert.equal((await client.task.fetch(task.id)).name, 't')
    const file = await client.file.create({ name: 'notes.txt' })
    assert.equal((await client.file.fetch(file.id)).name, 'notes.txt')
    const usage = await client.usage.fetch()
    assert.equal(typeof usage.tokens, 'number')
    const models = await client.platform.model.list({})
    assert.ok(models.items.length >= 1)
  })

  await check('tasks run in the background and abilities execute', async () => {
    const task = await client.task.create({ name: 'hello', description: 'Say hello to the team.' })
    assert.deepEqual(await client.task.trigger(task.id), { id: task.id })
    let execution
    for (let i = 0; i < 200 && !(execution && execution.outcome !== 'pending'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      execution = (await client.task.execution.list(task.id, {})).items[0]
    }
    assert.equal(execution.outcome, 'success')
    assert.ok(execution.summary && execution.conversationId)
    const skillset = await client.skillset.create({ name: 'free text' })
    const ability = await client.skillset.ability.create(skillset.id, {
      name: 'greet',
      description: 'Greets',
      instruction: 'Say hello politely.',
    })
    const executed = await client.skillset.ability.execute(skillset.id, ability.id, { input: 'Ann' })
    assert.deepEqual(executed.result, { instruction: 'Say hello politely.' })
    assert.equal(executed.usage.token, 0)
    await assert.rejects(
      client.skillset.ability.create(skillset.id, { name: 'x', instruction: '```email/send\nto: a\n```' }),
      (e) => e.code === 'BAD_REQUEST'
    )
  })

  await check('file upload and download: the same bytes', async () => {
    const file = await client.file.create({ name: 'hello.txt' })
    const bytes = new Uint8Array(70000).map((_, i) => (i * 7) % 256)
    await client.file.upload(file.id, { data: bytes.buffer, type: 'application/octet-stream', name: 'hello.bin' })
    const fetched = await client.file.fetch(file.id)
    assert.equal(fetched.size, bytes.length)
    const downloaded = await client.file.download(file.id)
    assert.deepEqual(new Uint8Array(downloaded.data), bytes)
    await client.file.upload(file.id, { data: 'now text', type: 'text/plain', name: 'hello.txt' })
    assert.equal(Buffer.from((await client.file.download(file.id)).data).toString(), 'now text')
  })

  await check('error codes', async () => {
    await assert.rejects(client.bot.fetch('01m84tf0w9f3se992gd2fj0kwb'), (e) => e.code === 'NOT_FOUND')
    await assert.rejects(client.bot.create({ name: 42 }), (e) => e.code === 'BAD_REQUEST')
    const nobody = new ChatBotKit({ baseUrl, secret: 'bk_not_a_token' })
    await assert.rejects(nobody.bot.list(), (e) => e.code === 'NOT_AUTHENTICATED')
  })
} catch (error) {
  console.error(`FAILED ${step}: ${error && error.stack ? error.stack : error}`)
  process.exit(1)
}
