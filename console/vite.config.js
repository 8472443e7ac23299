import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The console is embedded in the gpuwatch binary and served at `/`;
// assets/ names carry content hashes, so the server may cache them forever.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        // Element Plus and ECharts change less often than the app: their own
        // chunks stay cached across console releases.
        manualChunks: { 'element-plus': ['element-plus'], echarts: ['echarts/core', 'echarts/charts', 'echarts/components', 'echarts/renderers'] },
      },
    },
  },
})
