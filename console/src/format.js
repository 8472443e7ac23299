// Dates in the viewer's zone (UTC on hover, see When.vue), money as seed 004
// shows it: ¥ with two decimals, from the API's exact decimal strings.
const local = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

export function localTime(iso) {
  return iso ? local.format(new Date(iso)) : '—'
}

export function utcTime(iso) {
  return iso ? new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : ''
}

// Rounds half away from zero on the decimal string itself: no float drift.
export function money(v, currency = 'CNY') {
  if (v === null || v === undefined || v === '') return '—'
  let s = String(v)
  const neg = s.startsWith('-')
  if (neg) s = s.slice(1)
  let [int, frac = ''] = s.split('.')
  frac = (frac + '000').slice(0, 3)
  let cents = BigInt(int + frac.slice(0, 2)) + (Number(frac[2]) >= 5 ? 1n : 0n)
  const digits = cents.toString().padStart(3, '0')
  const out = `${digits.slice(0, -2).replace(/\B(?=(\d{3})+$)/g, ',')}.${digits.slice(-2)}`
  const symbol = currency === 'CNY' ? '¥' : `${currency} `
  return `${neg && cents !== 0n ? '-' : ''}${symbol}${out}`
}

export function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}="${v}"`).join(', ')
}
