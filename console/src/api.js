// Every call to /api/v1 goes through here: the bearer header, and errors
// that say which call failed and why, in the server's words.
import { session, remember, forget } from './session.js'

export class ApiError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

export async function api(path, { method = 'GET', body, token, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token ?? session.token}` }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const what = `${method} ${path.split('?')[0]}`
  let r
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (e) {
    throw new ApiError(0, `${what}: the gpuwatch server did not answer (${e.message}); check that it runs, then retry`)
  }
  if (!r.ok) {
    let msg = r.statusText
    try {
      msg = (await r.json()).error?.message || msg
    } catch {
      // not a JSON error body: keep the status text
    }
    if (r.status === 401 && token === undefined) forget()
    throw new ApiError(r.status, `${what} failed (${r.status}): ${msg}`)
  }
  if (raw) return r
  const text = await r.text()
  return text ? JSON.parse(text) : null
}

// All items of a paged list (limit at most 1000 per page).
export async function all(path) {
  const sep = path.includes('?') ? '&' : '?'
  const items = []
  for (;;) {
    const p = await api(`${path}${sep}limit=1000&offset=${items.length}`)
    items.push(...p.items)
    if (p.items.length === 0 || items.length >= p.total) return items
  }
}

export async function signIn(token) {
  const who = await api('/api/v1/whoami', { token })
  remember(token, who)
  return who
}

// Restores the role of a token kept from earlier in this tab's session.
export async function resume() {
  if (!session.token) return false
  try {
    await signIn(session.token)
    return true
  } catch {
    forget()
    return false
  }
}

// Saves a response body as a file, named as the server says.
export async function download(path, fallbackName) {
  const r = await api(path, { raw: true })
  const cd = r.headers.get('content-disposition') || ''
  const name = /filename="([^"]+)"/.exec(cd)?.[1] || fallbackName
  const url = URL.createObjectURL(await r.blob())
  const a = document.createElement('a')
  a.href = url
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10000)
}
