// The official Node SDK driving conversation compaction against the built-in
// responder; run by tests/test_compaction.py (BOTKIT_URL, BOTKIT_TOKEN, BOTKIT_OTHER_TOKEN).
// The SDK types conversation/{conversationId}/compact but has no method for it: an app
// calls it through its clientFetch.
import assert from 'node:assert/strict'
import { ChatBotKit } from '@chatbotkit/sdk'

const baseUrl = process.env.BOTKIT_URL
const client = new ChatBotKit({ baseUrl, secret: process.env.BOTKIT_TOKEN })
const other = new ChatBotKit({ baseUrl, secret: process.env.BOTKIT_OTHER_TOKEN })

let step = ''
async function check(name, fn) {
  step = name
  await fn()
  console.log(`ok ${name}`)
}

const compact = (c, id) => c.clientFetch(`/api/v1/conversation/${id}/compact`, { record: {} })

try {
  let conversationId, checkpointId
  await check('an empty conversation has nothing to compact', async () => {
    conversationId = (await client.conversation.create({})).id
    assert.equal((await compact(client, conversationId)).id, conversationId)
  })

  await check('compaction after completions stores a checkpoint', async () => {
    await client.conversation.complete(conversationId, { text: 'My order 4411 arrived broken.' })
    await client.conversation.complete(conversationId, { text: 'I would like a refund for order 4411.' })
    const done = await compact(client, conversationId)
    checkpointId = done.id
    assert.notEqual(checkpointId, conversationId)
    assert.ok(done.text.startsWith('Extractive summary'), done.text)
    assert.ok(done.text.includes('User: I would like a refund for order 4411.'), done.text)
    assert.equal((await compact(client, conversationId)).id, conversationId)
  })

  await check('a completion after compaction works and every message is listed', async () => {
    const answer = await client.conversation.complete(conversationId, { text: 'Any news?' })
    assert.ok(answer.id && answer.text)
    const { items } = await client.conversation.message.list(conversationId, { take: 100, order: 'asc' })
    assert.deepEqual(items.map((m) => m.type), ['user', 'bot', 'user', 'bot', 'checkpoint', 'user', 'bot'])
    assert.equal(items[4].id, checkpointId)
  })

  await check("another account's conversation is not found", async () => {
    await assert.rejects(compact(other, conversationId), (err) => err.code === 'NOT_FOUND' || err.statusCode === 404)
  })
} catch (err) {
  console.error(`FAILED ${step}:`, err)
  process.exit(1)
}
