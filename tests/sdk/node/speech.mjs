// The official Node SDK's conversation.message.synthesize against a botkit server with a
// speech model (tests/test_speech.py: BOTKIT_URL, BOTKIT_TOKEN).
import assert from 'node:assert/strict'
import { ChatBotKit } from '@chatbotkit/sdk'

const client = new ChatBotKit({ baseUrl: process.env.BOTKIT_URL, secret: process.env.BOTKIT_TOKEN })
try {
  const conversation = (await client.conversation.create({})).id
  const message = (await client.conversation.message.create(conversation, { type: 'bot', text: 'Hello there.' })).id
  // the SDK types the route but has no method for it: an app calls it through clientFetch
  const url = `/api/v1/conversation/${conversation}/message/${message}/synthesize`
  assert.equal((await client.clientFetch(url, { record: {} })).id, message)
  const audio = (await client.conversation.message.fetch(conversation, message)).meta.audio
  const downloaded = await client.file.download(audio.fileId)
  assert.equal(Buffer.from(downloaded.data).toString(), 'FAKE-MP3:Hello there.')
  console.log('ok synthesize')
} catch (error) {
  console.error(`FAILED synthesize: ${error && error.stack ? error.stack : error}`)
  process.exit(1)
}
