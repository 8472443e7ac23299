// Only the ECharts parts the console draws: line charts and gauges.
import * as echarts from 'echarts/core'
import { LineChart, GaugeChart } from 'echarts/charts'
import { GridComponent, TooltipComponent, LegendComponent } from 'echarts/components'
import { CanvasRenderer } from 'echarts/renderers'

echarts.use([LineChart, GaugeChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer])

export { echarts }

// Seed 004's colours for the host charts and the gauge levels.
export const COLORS = { cpu: '#409EFF', memory: '#67C23A', disk: '#E6A23C', gpu: '#F56C6C' }
export const LEVELS = { normal: '#67C23A', warning: '#E6A23C', danger: '#F56C6C' }
