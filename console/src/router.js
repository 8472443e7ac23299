import { createRouter, createWebHistory } from 'vue-router'
import Alerts from './views/Alerts.vue'
import Silences from './views/Silences.vue'
import Hosts from './views/Hosts.vue'
import Host from './views/Host.vue'
import Gpu from './views/Gpu.vue'
import Notifications from './views/Notifications.vue'
import Finance from './views/Finance.vue'
import { can } from './session.js'

// `need` is the grant of the API routes the page reads (session.js).
export const pages = [
  { path: '/alerts', component: Alerts, name: 'Alerts', need: 'read' },
  { path: '/silences', component: Silences, name: 'Silences', need: 'read' },
  { path: '/hosts', component: Hosts, name: 'Hosts', need: 'read' },
  { path: '/notifications', component: Notifications, name: 'Notifications', need: 'read' },
  { path: '/finance', component: Finance, name: 'Finance', need: 'finance' },
]

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    ...pages.map((p) => ({ path: p.path, component: p.component, meta: { need: p.need, title: p.name } })),
    { path: '/hosts/:id', component: Host, props: true, meta: { need: 'read', title: 'Host' } },
    { path: '/gpus/:id', component: Gpu, props: true, meta: { need: 'read', title: 'GPU' } },
    { path: '/', redirect: () => home() },
    { path: '/:rest(.*)*', redirect: () => home() },
  ],
})

export function home() {
  return (pages.find((p) => can(p.need)) || pages[0]).path
}

router.afterEach((to) => {
  document.title = `${to.meta.title || 'Console'} · gpuwatch`
})
