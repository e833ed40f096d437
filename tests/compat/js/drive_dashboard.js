// Drive the engine's /dashboard page in headless Chromium: paste the admin token, show the
// metrics, and print what the page's tables say.
// Usage: node drive_dashboard.js ENGINE_URL ADMIN_TOKEN
// Chromium: $CHROMIUM, else `chromium` on PATH. Prints one JSON line: {tables: {id: [[cell]]},
// error, problems}; exits non-zero on a page error, a failed request or a non-loopback request.
'use strict'
const { isLoopback, withBrowser, report, run } = require('./chromium')

async function main() {
  const [base, token] = process.argv.slice(2)
  if (!base || !token) throw new Error('usage: drive_dashboard.js ENGINE_URL ADMIN_TOKEN')
  const problems = []
  const result = await withBrowser(async (browser) => {
    const page = await browser.newPage()
    page.on('request', (req) => {
      if (!isLoopback(req.url())) problems.push('non-loopback: ' + req.url())
    })
    page.on('requestfailed', (req) => problems.push('request failed: ' + req.url()))
    page.on('pageerror', (err) => problems.push('page error: ' + err))
    await page.goto(base + '/dashboard', { waitUntil: 'load', timeout: 20000 })
    await page.type('#token', token)
    await page.click('button[type=submit]')
    await page.waitForFunction(
      () => document.querySelector('#range').textContent || document.querySelector('#error').textContent,
      { timeout: 20000 })
    return page.evaluate(() => {
      const tables = {}
      for (const id of ['channels', 'templates', 'journeys', 'funnel', 'revenue', 'acquisition']) {
        tables[id] = [...document.querySelectorAll(`#${id} tr`)].map(
          (tr) => [...tr.cells].map((c) => c.textContent))
      }
      return { tables, error: document.querySelector('#error').textContent }
    })
  })
  report({ ...result, problems })
}

run(main)
