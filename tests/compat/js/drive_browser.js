// Drive @segment/analytics-next 1.84.3 in headless Chromium (clients.md §3.1, §7).
// Usage: node drive_browser.js PAGE_URL
//   PAGE_URL = http://127.0.0.1:<page port>/index.html?api=127.0.0.1:<engine port>&wk=..&prefix=..
// Chromium: $CHROMIUM, else `chromium` on PATH.  Prints a JSON summary of every request
// the page made; exits non-zero on a timeout, a page error or any non-loopback request.
'use strict'
const { isLoopback, withBrowser, report, run } = require('./chromium')

async function main() {
  const pageUrl = process.argv[2]
  if (!pageUrl) throw new Error('usage: drive_browser.js PAGE_URL')
  const seen = new Map() // puppeteer HTTPRequest -> {method, url, status}
  const problems = []
  await withBrowser(async (browser) => {
    const page = await browser.newPage()
    page.on('request', (req) => {
      seen.set(req, { method: req.method(), url: req.url(), status: null })
      if (!isLoopback(req.url())) problems.push('non-loopback request: ' + req.url())
    })
    page.on('response', (res) => {
      const entry = seen.get(res.request())
      if (entry) entry.status = res.status()
    })
    page.on('requestfailed', (req) => {
      problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure() && req.failure().errorText}`)
    })
    page.on('pageerror', (err) => problems.push('page error: ' + err))
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push('console error: ' + msg.text())
    })
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 })
    await page.waitForFunction(() => document.title === 'done' || document.title.startsWith('error'), { timeout: 20000 })
    const title = await page.title()
    if (title !== 'done') problems.push('page reported: ' + title)
    await page.waitForNetworkIdle({ idleTime: 300, timeout: 10000 })
  })
  report({ requests: [...seen.values()], problems })
}

run(main)
