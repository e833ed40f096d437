// Drive the engine's /dashboard page in headless Chromium: paste the admin token, show the
// metrics, and print what the page's tables say.
// Usage: node drive_dashboard.js ENGINE_URL ADMIN_TOKEN
// Chromium: $CHROMIUM, else `chromium` on PATH. Prints one JSON line: {tables: {id: [[cell]]},
// error, problems}; exits non-zero on a page error, a failed request or a non-loopback request.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const puppeteer = require('puppeteer-core')

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM
  return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim()
}

async function main() {
  const [base, token] = process.argv.slice(2)
  if (!base || !token) throw new Error('usage: drive_dashboard.js ENGINE_URL ADMIN_TOKEN')
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'leadloop-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    userDataDir,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  })
  const problems = []
  let result = {}
  try {
    const page = await browser.newPage()
    page.on('request', (req) => {
      const url = new URL(req.url())
      if (url.protocol === 'data:') return // the browser's own icons (the date pickers')
      if (!['127.0.0.1', 'localhost'].includes(url.hostname)) problems.push('non-loopback: ' + req.url())
    })
    page.on('requestfailed', (req) => problems.push('request failed: ' + req.url()))
    page.on('pageerror', (err) => problems.push('page error: ' + err))
    await page.goto(base + '/dashboard', { waitUntil: 'load', timeout: 20000 })
    await page.type('#token', token)
    await page.click('button[type=submit]')
    await page.waitForFunction(
      () => document.querySelector('#range').textContent || document.querySelector('#error').textContent,
      { timeout: 20000 })
    result = await page.evaluate(() => {
      const tables = {}
      for (const id of ['channels', 'templates', 'journeys', 'funnel', 'revenue', 'acquisition']) {
        tables[id] = [...document.querySelectorAll(`#${id} tr`)].map(
          (tr) => [...tr.cells].map((c) => c.textContent))
      }
      return { tables, error: document.querySelector('#error').textContent }
    })
  } finally {
    await browser.close()
    fs.rmSync(userDataDir, { recursive: true, force: true })
  }
  console.log(JSON.stringify({ ...result, problems }))
  if (problems.length) {
    console.error(problems.join('\n'))
    process.exit(1)
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(2)
})
