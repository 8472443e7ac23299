// The matcher language of silences (Alertmanager's: `{alertname="X",
// gpu=~"0|1"}`), parsed here only to preview which current alerts a silence
// being typed would mute; the server parses it again and is the judge.
const OPS = ['=~', '!~', '!=', '=']

export function parseMatchers(text) {
  let s = text.trim()
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1)
  const out = []
  let i = 0
  const ws = () => { while (i < s.length && /[\s,]/.test(s[i])) i++ }
  ws()
  while (i < s.length) {
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i))?.[0]
    if (!name) throw new Error(`a label name is expected at "${s.slice(i, i + 12)}"`)
    i += name.length
    while (s[i] === ' ') i++
    const op = OPS.find((o) => s.startsWith(o, i))
    if (!op) throw new Error(`after ${name}: one of = != =~ !~ is expected`)
    i += op.length
    while (s[i] === ' ') i++
    let value = ''
    if (s[i] === '"') {
      i++
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++
        value += s[i++]
      }
      if (s[i] !== '"') throw new Error(`the value of ${name} has no closing quote`)
      i++
    } else {
      value = /^[^,\s}]*/.exec(s.slice(i))[0]
      i += value.length
    }
    let re = null
    if (op === '=~' || op === '!~') {
      try {
        re = new RegExp(`^(?:${value})$`)
      } catch (e) {
        throw new Error(`the regex of ${name} does not compile: ${e.message}`)
      }
    }
    out.push({ name, op, value, re })
    ws()
  }
  if (out.length === 0) throw new Error('a silence needs at least one matcher, e.g. alertname="GpuHot"')
  return out
}

export function matches(ms, labels) {
  return ms.every(({ name, op, value, re }) => {
    const v = labels?.[name] ?? ''
    if (op === '=') return v === value
    if (op === '!=') return v !== value
    if (op === '=~') return re.test(v)
    return !re.test(v)
  })
}

export function matcherText(ms) {
  return `{${ms.map((m) => `${m.name}${m.op}${JSON.stringify(m.value)}`).join(', ')}}`
}

// Labels that say which series fired, not what the alert is: enough to
// silence exactly this alert.
export function matchersFor(labels) {
  return matcherText(Object.entries(labels || {}).map(([name, value]) => ({ name, op: '=', value })))
}
