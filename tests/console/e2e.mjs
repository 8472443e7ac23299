// Drives Debian's chromium through playwright-core against a running
// `gpuwatch serve` (started and seeded by tests/suite/console.rs). One step
// per run, named by the first argument; what a step learns for the Rust
// side is printed as one JSON line prefixed "RESULT ". Every page a step
// visits is screenshotted at 1280x800 and 390x844 and checked with axe-core.
//
// Environment: BASE_URL, TOKEN, CHROMIUM (the browser binary), SHOTS (the
// screenshot folder), DOWNLOADS (where downloads are saved).
import { createRequire } from 'node:module'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const require = createRequire(new URL('../../console/package.json', import.meta.url))
const { chromium } = require('playwright-core')
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8')

const { BASE_URL, TOKEN, CHROMIUM, SHOTS, DOWNLOADS } = process.env
const step = process.argv[2]
const SIZES = [[1280, 800], [390, 844]]
const problems = []

function check(ok, what) {
  if (!ok) problems.push(what)
}

async function signIn(page, token) {
  await page.goto(`${BASE_URL}/`)
  await page.getByLabel('API token').fill(token)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByTestId('role').waitFor()
}

// axe-core in the page; a critical violation fails the step.
async function axe(page, name) {
  await page.addScriptTag({ content: AXE })
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] })
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }))
  })
  for (const v of r) {
    if (v.impact === 'critical') problems.push(`axe on ${name}: critical ${v.id} at ${v.nodes.join('; ')}`)
  }
  return r
}

async function shoot(page, name) {
  const original = page.viewportSize()
  for (const [w, h] of SIZES) {
    await page.setViewportSize({ width: w, height: h })
    await page.waitForTimeout(300) // charts re-lay out on resize
    await page.screenshot({ path: join(SHOTS, `${name}-${w}x${h}.png`) })
  }
  await page.setViewportSize(original)
  const v = await axe(page, name)
  return v
}

const steps = {
  // Operator: the hot GPU's alert, silenced from the alerts page.
  async 'operator-silence'(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/alerts`)
    const row = page.getByTestId('alert').filter({ hasText: 'GpuHot' }).filter({ hasText: 'gpu_id=1' })
    await row.first().waitFor()
    check(await row.count() === 1, 'exactly one GpuHot alert for gpu_id=1')
    await shoot(page, 'alerts')
    await row.getByTestId('silence-button').click()
    const box = page.getByTestId('silence-matchers')
    await box.waitFor()
    const prefilled = await box.inputValue()
    check(prefilled.includes('gpu_id="1"') && prefilled.includes('alertname="GpuHot"'), `matchers pre-filled from the labels: ${prefilled}`)
    await page.getByTestId('silence-preview').getByText('Would mute 1 of').waitFor()
    await page.getByLabel('Comment').fill('fan replaced tomorrow')
    await shoot(page, 'silence-dialog')
    await page.getByTestId('silence-save').click()
    await page.getByText(/Silence \d+ created/).waitFor()
    const id = Number((await page.getByText(/Silence \d+ created/).textContent()).match(/\d+/)[0])
    return { silence_id: id, prefilled }
  },

  // Operator: the silence listed, expired; the GPU and host pages.
  async 'operator-expire'(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/silences`)
    await page.getByTestId('silences').getByText('fan replaced tomorrow').waitFor()
    await shoot(page, 'silences')
    await page.locator('tr', { hasText: 'fan replaced tomorrow' }).getByTestId('expire-button').click()
    await page.getByText(/Silence \d+ expired/).waitFor()
    await page.getByText('No active silences').waitFor()
    await page.goto(`${BASE_URL}/gpus/1`)
    const gauge = page.getByTestId('gauge-temperature')
    await gauge.waitFor()
    await page.waitForFunction(() => document.querySelector('[data-testid=gauge-temperature]')?.dataset.value !== '')
    const temp = { level: await gauge.getAttribute('data-level'), color: await gauge.getAttribute('data-color'), value: Number(await gauge.getAttribute('data-value')) }
    await shoot(page, 'gpu')
    await page.goto(`${BASE_URL}/hosts/h1`)
    await page.getByRole('heading', { name: /gpu-node-1/ }).waitFor()
    await page.locator('.chart canvas').first().waitFor()
    await page.waitForTimeout(500)
    check(await page.getByText(/^No samples/).count() === 0, 'the host page charts the last hour of samples')
    await shoot(page, 'host')
    await page.goto(`${BASE_URL}/hosts`)
    await page.getByTestId('hosts').getByText('gpu-node-1').waitFor()
    await shoot(page, 'hosts')
    await page.goto(`${BASE_URL}/notifications`)
    await page.getByTestId('notifications').waitFor()
    await shoot(page, 'notifications')
    return { temperature: temp }
  },

  // Operator: the hot GPU's alert acknowledged; who and when shown; the
  // notification that carried it links back to it; the GPU's charts with
  // their min/max bands.
  async 'operator-acknowledge'(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/alerts`)
    const row = page.getByTestId('alert').filter({ hasText: 'GpuHot' }).filter({ hasText: 'gpu_id=1' })
    await row.first().waitFor()
    await row.getByTestId('acknowledge-button').click()
    await page.getByText(/Alert \d+ acknowledged/).waitFor()
    const acked = (await row.getByTestId('acknowledged').innerText()).trim()
    check(/^acknowledged by operator /.test(acked), `who acknowledged is shown: ${acked}`)
    check(await row.getByTestId('acknowledge-button').count() === 0, 'an acknowledged alert offers no Acknowledge')
    check(await row.getByTestId('unacknowledge-button').count() === 1, 'an acknowledged alert offers Unacknowledge')
    // Still acknowledged after a reload: the server keeps it.
    await page.reload()
    await row.getByTestId('acknowledged').waitFor()
    await shoot(page, 'alerts-acknowledged')

    await page.goto(`${BASE_URL}/notifications`)
    const link = page.getByTestId('notifications').getByTestId('alert-link').filter({ hasText: 'GpuHot' }).first()
    await link.waitFor()
    const gpuLinks = await page.getByTestId('notifications').getByTestId('gpu-link').count()
    await shoot(page, 'notifications-alerts')
    await link.click()
    await page.waitForURL(/\/alerts\?alert=\d+/)
    const focused = page.locator('[data-testid=alert].focused')
    await focused.waitFor()
    const focusedText = await focused.innerText()
    check(focusedText.includes('GpuHot') && focusedText.includes('gpu_id=1'), `the link opens its alert: ${focusedText}`)
    const linked = Number(new URL(page.url()).searchParams.get('alert'))
    await shoot(page, 'alerts-linked')

    await page.goto(`${BASE_URL}/gpus/1`)
    const chart = page.getByTestId('gpu-temperature-chart')
    await chart.locator('canvas').waitFor()
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=gpu-temperature-chart]')?.dataset.bandSpread) > 0, null, { timeout: 15000 })
    const bands = {
      temperature: Number(await chart.getAttribute('data-bands')),
      temperature_spread: Number(await chart.getAttribute('data-band-spread')),
      usage: Number(await page.getByTestId('gpu-usage-chart').getAttribute('data-bands')),
      label: await chart.getAttribute('aria-label'),
    }
    await shoot(page, 'gpu-history')
    // 24h: 120 buckets of 12 minutes; nine series reads (avg, min, max of three metrics).
    let dayReads = 0
    const allRead = new Promise((resolve) => page.on('response', (r) => {
      if (r.url().includes('/api/v1/series') && r.url().includes('step=720s') && ++dayReads === 9) resolve()
    }))
    await page.locator('.el-radio-button', { hasText: '24h' }).click()
    await allRead
    await page.waitForTimeout(300)
    bands.day = Number(await chart.getAttribute('data-bands'))
    bands.day_spread = Number(await chart.getAttribute('data-band-spread'))
    return { acknowledged: acked, linked_alert: linked, gpu_links: gpuLinks, bands }
  },

  // Operator: a dead letter, listed with the alert it carried, replayed.
  async 'dead-letter'(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/notifications`)
    await page.locator('.el-radio-button', { hasText: 'Dead letters' }).click()
    const row = page.getByTestId('notifications').locator('tr', { hasText: 'GpuHot' })
    await row.first().waitFor()
    check(await row.count() === 1, `one dead letter about GpuHot, got ${await row.count()}`)
    const text = await row.innerText()
    check(text.includes('dead') && text.includes('GPU 0') && text.includes('h1'), `the dead letter names its alert, GPU and host: ${text}`)
    await shoot(page, 'notifications-dead')
    const href = await row.getByTestId('alert-link').getAttribute('href')
    await row.getByRole('button', { name: /^Replay notification/ }).click()
    await page.getByText('Queued for delivery again').waitFor()
    await page.getByText(/^\s*No dead letters/).waitFor()
    await page.goto(`${BASE_URL}${href}`)
    const focused = page.locator('[data-testid=alert].focused')
    await focused.waitFor()
    check((await focused.innerText()).includes('GpuHot'), 'the link opens its alert')
    return { linked_alert: Number(new URL(`${BASE_URL}${href}`).searchParams.get('alert')) }
  },

  // Viewer: reads alerts and silences, is offered no silence control.
  async viewer(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/alerts`)
    await page.getByTestId('alert').filter({ hasText: 'GpuHot' }).first().waitFor()
    const silenceButtons = await page.getByTestId('silence-button').count()
    const ackButtons = await page.getByTestId('acknowledge-button').count() + await page.getByTestId('unacknowledge-button').count()
    await page.goto(`${BASE_URL}/silences`)
    await page.getByRole('heading', { name: 'Silences' }).waitFor()
    const newButtons = await page.getByTestId('new-silence').count()
    const nav = await page.getByRole('navigation', { name: 'Pages' }).innerText()
    await shoot(page, 'viewer-silences')
    return { silence_buttons: silenceButtons, acknowledge_buttons: ackButtons, new_silence_buttons: newButtons, nav }
  },

  // Finance: the invoice CSV downloaded from the Finance page.
  async finance(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/finance`)
    await page.getByTestId('invoices').waitFor()
    await shoot(page, 'finance-invoices')
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('invoice-csv').click()])
    const path = join(DOWNLOADS, dl.suggestedFilename())
    await dl.saveAs(path)
    await page.getByRole('tab', { name: 'Usage' }).click()
    await page.waitForTimeout(500)
    await shoot(page, 'finance-usage')
    await page.getByRole('tab', { name: 'Prices' }).click()
    await page.getByTestId('prices').waitFor()
    await shoot(page, 'finance-prices')
    // A price added from the form, in the viewer's zone (Asia/Shanghai).
    const addPrice = async (model, amount, from) => {
      await page.getByTestId('new-price').click()
      await page.getByRole('dialog', { name: 'Add a price' }).waitFor()
      await page.getByLabel('GPU model').fill(model)
      await page.getByLabel('Unit price per hour').fill(amount)
      const when = page.getByRole('dialog').locator('input[aria-label="In force from"]')
      await when.fill(from)
      await when.press('Enter')
      await page.getByTestId('price-save').click()
    }
    await addPrice('A100', '12.5', '2027-01-01 08:00:00')
    await page.getByText(/Price \d+ added/).waitFor()
    const added = Number((await page.getByText(/Price \d+ added/).textContent()).match(/\d+/)[0])
    const priceRow = page.getByTestId('prices').locator('tr', { hasText: 'A100' })
    await priceRow.waitFor()
    const priceText = await priceRow.innerText()
    check(priceText.includes('¥12.50'), `the new price is listed: ${priceText}`)
    await shoot(page, 'finance-prices-added')
    // The same start again overlaps it: the server's 409, shown in the form.
    await addPrice('A100', '13', '2027-01-01 08:00:00')
    const refusal = page.getByRole('dialog').getByText(/Refused \(409\): it overlaps/)
    await refusal.waitFor()
    const overlap = await refusal.innerText()
    await shoot(page, 'finance-price-overlap')
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click()
    const nav = await page.getByRole('navigation', { name: 'Pages' }).innerText()
    return { csv: path, name: dl.suggestedFilename(), nav, price_id: added, overlap }
  },

  // Operator: a host into maintenance and back, from the hosts table.
  async maintenance(page) {
    await signIn(page, TOKEN)
    await page.goto(`${BASE_URL}/hosts`)
    const row = page.locator('tr', { hasText: 'gpu-node-1' })
    await row.getByTestId('maintenance-button').click()
    await row.locator('[data-status=maintenance]').waitFor({ timeout: 10000 })
    await shoot(page, 'hosts-maintenance')
    await row.getByTestId('maintenance-button').click()
    await row.locator('[data-status=online]').waitFor({ timeout: 10000 })
    return { toggled: true }
  },

  // The alerts page with many firing alerts: first contentful paint, and
  // when the count of shown alerts is on screen. Figures only, no limits.
  async 'alerts-paint'(page) {
    await signIn(page, TOKEN)
    const t0 = Date.now()
    await page.goto(`${BASE_URL}/alerts`)
    await page.getByTestId('alert-count').getByText(/^[1-9]\d* alerts/).waitFor({ timeout: 120000 })
    const shown = Date.now() - t0
    const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null)
    const count = await page.getByTestId('alert-count').innerText()
    await page.screenshot({ path: join(SHOTS, 'alerts-1000-1280x800.png') })
    return { first_contentful_paint_ms: fcp, alerts_shown_ms: shown, count }
  },
}

mkdirSync(SHOTS, { recursive: true })
mkdirSync(DOWNLOADS, { recursive: true })
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, timezoneId: 'Asia/Shanghai' })
const page = await context.newPage()
const consoleErrors = []
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()) })
page.on('pageerror', (e) => consoleErrors.push(String(e)))
let result
try {
  result = await steps[step](page)
  // The token must never reach a URL or the page's storage other than sessionStorage.
  const leaks = await page.evaluate((t) => ({ url: location.href.includes(t), local: JSON.stringify(localStorage).includes(t) }), TOKEN)
  check(!leaks.url && !leaks.local, `token leaked: ${JSON.stringify(leaks)}`)
} catch (e) {
  await page.screenshot({ path: join(SHOTS, `failed-${step}.png`) }).catch(() => {})
  problems.push(`${step}: ${e.message}`)
}
await browser.close()
console.log(`RESULT ${JSON.stringify({ result, problems, console_errors: consoleErrors })}`)
process.exit(problems.length ? 1 : 0)
