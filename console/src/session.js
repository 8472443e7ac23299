// The signed-in token and its role. The token lives in sessionStorage only
// (gone when the tab closes), never in a URL, and is sent as a bearer header.
import { reactive } from 'vue'

const KEY = 'gpuwatch.token'

export const session = reactive({
  token: sessionStorage.getItem(KEY) || '',
  role: '',
  tokenId: null,
})

// The roles of the API's route table (api/src/endpoints.rs): READ, WRITE, FINANCE.
const GRANTS = {
  read: ['admin', 'operator', 'viewer'],
  write: ['admin', 'operator'],
  finance: ['admin', 'finance'],
}

export function can(what) {
  return GRANTS[what].includes(session.role)
}

export function remember(token, who) {
  sessionStorage.setItem(KEY, token)
  session.token = token
  session.role = who.role
  session.tokenId = who.token_id
}

export function forget() {
  sessionStorage.removeItem(KEY)
  session.token = ''
  session.role = ''
  session.tokenId = null
}
