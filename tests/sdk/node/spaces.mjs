// The official Node SDK driving spaces and their storage; run by tests/test_spaces.py
// (BOTKIT_URL, BOTKIT_TOKEN). The SDK uploads with JSON ({file: data: URL}) and asks
// downloads for {id, url} (Accept: application/json).
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

const dataUrl = (text) => `data:text/plain;base64,${Buffer.from(text).toString('base64')}`

try {
  let spaceId, contactId
  await check('space CRUD, list and a contact\'s spaces', async () => {
    contactId = (await client.contact.create({ name: 'Ada' })).id
    spaceId = (await client.space.create({ name: 'work', contactId, meta: { team: 'a' } })).id
    assert.equal((await client.space.fetch(spaceId)).name, 'work')
    await client.space.update(spaceId, { description: 'shared files' })
    assert.equal((await client.space.fetch(spaceId)).description, 'shared files')
    assert.ok((await client.space.list({ meta: { team: 'a' } })).items.some((s) => s.id === spaceId))
    const streamed = []
    for await (const { type, data } of client.space.list().stream()) {
      if (type === 'item') streamed.push(data.id)
    }
    assert.ok(streamed.includes(spaceId))
    const theirs = await client.contact.space.list(contactId)
    assert.deepEqual(theirs.items.map((s) => s.id), [spaceId])
  })

  await check('upload and download by path (segments with spaces and unicode)', async () => {
    const up = await client.space.storage.upload(spaceId, 'docs/read me.txt', { file: dataUrl('hello') })
    assert.equal(up.path, 'docs/read me.txt')
    await client.space.storage.upload(spaceId, 'docs/ünï/ß.txt', { file: dataUrl('unicode') })
    const link = await client.space.storage.download(spaceId, 'docs/read me.txt')
    assert.equal(link.id, up.id)
    assert.equal(await (await fetch(link.url)).text(), 'hello')
    const uni = await client.space.storage.download(spaceId, 'docs/ünï/ß.txt')
    assert.equal(await (await fetch(uni.url)).text(), 'unicode')
  })

  await check('list folders', async () => {
    const root = await client.space.storage.list(spaceId)
    assert.deepEqual(root.items.map((e) => [e.path, e.isDirectory]), [['docs', true]])
    const docs = await client.space.storage.list(spaceId, 'docs')
    assert.deepEqual(docs.items.map((e) => e.path), ['docs/read me.txt', 'docs/ünï'])
    const all = await client.space.storage.list(spaceId, 'docs', { recursive: true })
    assert.deepEqual(all.items.map((e) => e.path), ['docs/read me.txt', 'docs/ünï/ß.txt'])
  })

  await check('copy, move, delete', async () => {
    assert.deepEqual(
      await client.space.storage.copy(spaceId, 'docs/read me.txt', { destinationPath: 'copy.txt' }),
      { path: 'copy.txt' },
    )
    await client.space.storage.move(spaceId, 'docs', { destinationPath: 'archive/docs' })
    const moved = await client.space.storage.list(spaceId, 'archive/docs', { recursive: true })
    assert.equal(moved.items.length, 2)
    await client.space.storage.delete(spaceId, 'copy.txt')
    await assert.rejects(client.space.storage.delete(spaceId, 'archive'), (e) => e.code === 'CONFLICT')
    await client.space.storage.delete(spaceId, 'archive', { recursive: true })
    assert.deepEqual((await client.space.storage.list(spaceId)).items, [])
    await assert.rejects(
      client.space.storage.download(spaceId, 'copy.txt'),
      (e) => e.code === 'NOT_FOUND',
    )
  })

  await check('delete the space', async () => {
    await client.space.delete(spaceId)
    await assert.rejects(client.space.fetch(spaceId), (e) => e.code === 'NOT_FOUND')
  })
} catch (error) {
  console.error(`failed at ${step}:`, error)
  process.exit(1)
}
