// Headless Chromium for the browser drivers: Debian's build ($CHROMIUM, else `chromium` on
// PATH), a throwaway profile, and the drivers' shared way of reporting and exiting.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const puppeteer = require('puppeteer-core')

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('chromium not found: set CHROMIUM or put chromium on PATH')
  }
}

// A request that stays on this machine (the page's own data:, blob: and about: URLs too).
function isLoopback(url) {
  const u = new URL(url)
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true
  return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)
}

// Runs `use(browser)` in a fresh headless Chromium, closed and its profile removed after.
async function withBrowser(use) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'leadloop-chromium-'))
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    userDataDir,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run',
    ],
  })
  try {
    return await use(browser)
  } finally {
    await browser.close()
    fs.rmSync(userDataDir, { recursive: true, force: true })
  }
}

// Prints the summary as one JSON line; exits 1 when it lists problems, 2 when `main` threw.
function report(summary) {
  console.log(JSON.stringify(summary))
  if (summary.problems.length) {
    console.error(summary.problems.join('\n'))
    process.exit(1)
  }
}

function run(main) {
  main().catch((err) => {
    console.error(err)
    process.exit(2)
  })
}

module.exports = { chromiumPath, isLoopback, withBrowser, report, run }
