// The official Node SDK driving blueprints, policies, portals, teams and a partner's
// child contexts and sessions; run by tests/test_blueprints.py (BOTKIT_URL, BOTKIT_TOKEN).
// The SDK has no export/import methods: an app calls them through its clientFetch.
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

try {
  let blueprintId, datasetId, botId, doc
  await check('blueprint CRUD and its resources', async () => {
    blueprintId = (await client.blueprint.create({ name: 'starter', visibility: 'private' })).id
    assert.equal((await client.blueprint.fetch(blueprintId)).name, 'starter')
    await client.blueprint.update(blueprintId, { description: 'the starting bot' })
    datasetId = (await client.dataset.create({ name: 'handbook', blueprintId })).id
    await client.dataset.record.create(datasetId, { text: 'Refunds are possible within 30 days of purchase.' })
    botId = (await client.bot.create({ name: 'Ada', datasetId, blueprintId })).id
    const listed = await client.blueprint.listResources(blueprintId)
    assert.deepEqual(listed.resources.bots.map((b) => b.id), [botId])
    assert.ok((await client.blueprint.list({})).items.some((b) => b.id === blueprintId))
  })

  await check('export, import into a child (run-as), clone', async () => {
    doc = await client.clientFetch(`/api/v1/blueprint/${blueprintId}/resource/export`)
    assert.equal(doc.resources.datasets[0].records.length, 1)
    const child = (await client.partner.user.create({ name: 'customer' })).id
    const asChild = new ChatBotKit({ baseUrl, secret, runAsUserId: child })
    const target = (await asChild.blueprint.create({ name: 'starter' })).id
    const imported = await asChild.clientFetch(`/api/v1/blueprint/${target}/resource/import`, { record: { resource: doc } })
    const newBot = imported.resources.bots[botId]
    const bot = await asChild.bot.fetch(newBot)
    assert.equal(bot.datasetId, imported.resources.datasets[datasetId])
    await assert.rejects(client.bot.fetch(newBot), (e) => e.code === 'NOT_FOUND')
    const cloned = await client.blueprint.clone(blueprintId)
    assert.notEqual(cloned.id, blueprintId)
    await client.blueprint.delete(cloned.id, { deleteResources: true })
    await assert.rejects(client.blueprint.fetch(cloned.id), (e) => e.code === 'NOT_FOUND')
  })

  await check('policies and portals', async () => {
    const policyId = (await client.policy.create({ name: '30 days', type: 'retention', config: { days: 30 } })).id
    assert.deepEqual((await client.policy.fetch(policyId)).config, { days: 30 })
    await client.policy.update(policyId, { config: { days: 7 } })
    assert.ok((await client.policy.list({})).items.some((p) => p.id === policyId))
    await client.policy.delete(policyId)
    const portalId = (await client.portal.create({ slug: 'help', config: { theme: 'dark' } })).id
    assert.equal((await client.portal.fetch(portalId)).slug, 'help')
    await client.portal.update(portalId, { name: 'Help' })
    await client.portal.delete(portalId)
    await assert.rejects(client.portal.fetch(portalId), (e) => e.code === 'NOT_FOUND')
  })

  await check('team list', async () => {
    const teams = await client.team.list({})
    assert.equal(teams.items.length, 1)
  })

  await check('partner contexts and a session acting as the child', async () => {
    const child = (await client.partner.user.create({ name: 'ctx' })).id
    const created = await client.partner.user.context.create(child, { name: 'onboarding', payload: { step: 1 } })
    assert.deepEqual(created.payload, { step: 1 })
    await client.partner.user.context.update(child, created.id, { payload: { step: 2 } })
    assert.deepEqual((await client.partner.user.context.fetch(child, created.id)).payload, { step: 2 })
    assert.equal((await client.partner.user.context.list(child, {})).items.length, 1)
    await client.partner.user.context.delete(child, created.id)
    const session = await client.partner.user.session.create(child, {
      durationInSeconds: 120,
      config: { allowedRoutes: ['/api/v1/bot/**'] },
    })
    const asSession = new ChatBotKit({ baseUrl, secret: session.token })
    const made = (await asSession.bot.create({ name: 'by session' })).id
    assert.equal((await asSession.bot.fetch(made)).name, 'by session')
    await assert.rejects(asSession.dataset.list({}), (e) => e.code === 'NOT_AUTHORIZED')
  })
  await check('an oauth secret starts its authorization', async () => {
    const config = { authorizeUrl: 'https://id.example.com/authorize', tokenUrl: 'https://id.example.com/token', clientId: 'app' }
    const secretId = (await client.secret.create({ name: 'crm', type: 'oauth', config })).id
    const started = await client.secret.authenticate(secretId)
    assert.equal(started.id, secretId)
    assert.ok(new URL(started.url).searchParams.get('code_challenge'))
  })
} catch (error) {
  console.error(`FAILED at step "${step}":`, error)
  process.exit(1)
}
