// Drive @segment/analytics-node 3.1.0 through the canonical scenario (clients.md §3.6, §7).
// Usage: node drive_node.js BASE WRITE_KEY PREFIX
'use strict'
const { Analytics } = require('@segment/analytics-node')

async function main() {
  const [base, writeKey, prefix] = process.argv.slice(2)
  if (!prefix) throw new Error('usage: drive_node.js BASE WRITE_KEY PREFIX')
  const analytics = new Analytics({ writeKey, host: base, flushAt: 20, flushInterval: 200, maxRetries: 2 })
  const failures = []
  analytics.on('error', (err) => failures.push(String(err && (err.reason || err.code || err))))
  const uid = prefix + 'user-42'
  analytics.identify({ userId: uid, traits: { email: 'ada@example.com', name: 'Ada Lovelace', plan: 'pro' } })
  analytics.track({ userId: uid, event: 'Order Completed', properties: { order_id: 'o-1001', revenue: 42.5, currency: 'EUR' } })
  analytics.page({ userId: uid, category: 'Docs', name: 'Getting Started', properties: { url: 'https://example.com/docs/start', path: '/docs/start' } })
  analytics.screen({ userId: uid, name: 'Welcome', properties: { step: 1 } })
  analytics.group({ userId: uid, groupId: prefix + 'acme-inc', traits: { name: 'Acme Inc', employees: 120 } })
  analytics.alias({ userId: uid, previousId: prefix + 'anon-7f3a' })
  analytics.track({
    anonymousId: prefix + 'anon-7f3a',
    event: 'Signup Started',
    properties: { source: 'ads' },
    context: { ip: '203.0.113.9' },
    timestamp: new Date('2024-05-01T12:00:00Z'),
    messageId: prefix + 'fixed-msg-id-1',
  })
  await analytics.closeAndFlush({ timeout: 15000 })
  if (failures.length) {
    console.error('delivery errors:\n' + failures.join('\n'))
    process.exit(1)
  }
  console.log('ok')
}

main().catch((err) => {
  console.error(err)
  process.exit(2)
})
