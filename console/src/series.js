// The host and GPU charts' reads of GET /api/v1/series: seed 004's ranges,
// 120 buckets each, and per metric the average with its min and max over
// the same buckets (exact from raw rows or the hourly and daily tiers,
// whichever the server picks for the range), drawn as a band.
import { api } from './api.js'

export const RANGES = ['1h', '6h', '24h', '7d', '30d']
const HOURS = { '1h': 1, '6h': 6, '24h': 24, '7d': 168, '30d': 720 }
const BUCKETS = 120

// metrics: [[name, metric, color]]; answers LineChart's series.
export async function banded(source, id, metrics, range) {
  const to = new Date()
  const from = new Date(to - HOURS[range] * 3600e3)
  const step = `${Math.max(10, Math.round((HOURS[range] * 3600) / BUCKETS))}s`
  const read = async (metric, agg) => {
    const q = new URLSearchParams({ source, metric, ids: id, from: from.toISOString(), to: to.toISOString(), step, agg })
    return (await api(`/api/v1/series?${q}`)).points
  }
  return Promise.all(metrics.map(async ([name, metric, color]) => {
    const [points, min, max] = await Promise.all([read(metric, 'avg'), read(metric, 'min'), read(metric, 'max')])
    return { name, color, points, min, max }
  }))
}
