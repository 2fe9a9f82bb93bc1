// Shared plumbing of the k6 scenarios: the seeded users, the two run modes and the
// spec's thresholds. Every scenario script imports this file and exports
// `options = scenarioOptions(<target>)` and a default function.
//
// Environment (all optional):
//   BASE_URL   service under test            (default http://127.0.0.1:3002)
//   TOKENS     token file written by cmd/seed (default loadtest/.data/tokens.json)
//   MODE       closed: constant-vus, finds the maximum throughput
//              rate:   constant-arrival-rate at RATE req/s with the spec's thresholds
//              warmup: every seeded user once (activates the actors)
//   VUS        closed-loop concurrency       (default 64)
//   DURATION   length of a run               (default 20s)
//   RATE       arrival rate of MODE=rate     (default 1000 per second)
//   PRE_VUS    VUs the rate mode starts with  (default 300; fewer make k6 drop
//              arrivals while it starts more when latency spikes)
//   MAX_VUS    VUs the rate mode may grow to (default 1000)
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3002').replace(/\/$/, '');
export const API = `${BASE_URL}/api/v1/users`;
const TOKENS = __ENV.TOKENS || './.data/tokens.json';

// The spec's response time targets (95th percentile), by kind of operation.
export const TARGETS = { profile: 200, search: 500, enrollment: 300 };

// Users and admins are parsed once and shared read-only by every VU.
export const users = new SharedArray('users', () => {
  const all = JSON.parse(open(TOKENS)).filter((u) => u.role !== 'admin');
  if (all.length === 0) throw new Error(`no users in ${TOKENS}: run make seed`);
  return all;
});
// Learners are the users with at least one seeded enrollment in progress.
export const learners = new SharedArray('learners', () =>
  JSON.parse(open(TOKENS)).filter((u) => u.role !== 'admin' && u.courses && u.courses.length > 0),
);
export const admins = new SharedArray('admins', () => {
  const all = JSON.parse(open(TOKENS)).filter((u) => u.role === 'admin');
  if (all.length === 0) throw new Error(`no admins in ${TOKENS}: run make seed`);
  return all;
});

// randomUser picks a user for this iteration: many users, so many actors.
export function randomUser() {
  return users[Math.floor(Math.random() * users.length)];
}

export function randomLearner() {
  return learners[Math.floor(Math.random() * learners.length)];
}

export function randomAdmin() {
  return admins[Math.floor(Math.random() * admins.length)];
}

// warmupUser walks the users in order, one per iteration (MODE=warmup).
export function warmupUser() {
  return users[exec.scenario.iterationInTest % users.length];
}

// params builds the request parameters: bearer token, JSON body type and the tag
// that the per-kind thresholds select on.
export function params(user, kind, extraHeaders) {
  return {
    headers: Object.assign(
      { Authorization: `Bearer ${user.token}`, 'Content-Type': 'application/json' },
      extraHeaders || {},
    ),
    tags: { kind },
  };
}

// ok checks the status; the harness reads the check rate from the summary.
export function ok(res, want) {
  return check(res, { [`status ${want}`]: (r) => r.status === want });
}

export function uuid() {
  // RFC 4122 version 4 from Math.random: course ids only need to be unique.
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

// Fragments of the names cmd/seed draws from, so that searches find something.
const searchTerms = [
  'ali', 'mar', 'ana', 'chen', 'leo', 'sam', 'nora', 'omar', 'yuki', 'zoe', 'priya', 'hugo',
  'smith', 'garcia', 'nguyen', 'patel', 'tanaka', 'rossi', 'silva', 'weber', 'kim', 'lopez',
  'example.com', 'mario_', 'julia.',
];
const sorts = ['createdAt', 'lastName', 'firstName', 'email', 'updatedAt'];

// searchQuery is a random admin search: a term, a page, sometimes a role, a sort.
export function searchQuery() {
  const q = [
    `search=${encodeURIComponent(searchTerms[Math.floor(Math.random() * searchTerms.length)])}`,
    `page=${1 + Math.floor(Math.random() * 3)}`,
    'limit=20',
    `sortBy=${sorts[Math.floor(Math.random() * sorts.length)]}`,
    `sortOrder=${Math.random() < 0.5 ? 'asc' : 'desc'}`,
  ];
  if (Math.random() < 0.3) q.push('role=student');
  return q.join('&');
}

const MODE = __ENV.MODE || 'closed';
const DURATION = __ENV.DURATION || '20s';

// scenarioOptions returns the options of one scenario. kinds maps each request kind
// the script tags to its target in TARGETS (e.g. {profile: 'profile'}); each gets a
// p95 threshold in rate mode, and every mode requires 0% failed requests.
export function scenarioOptions(kinds) {
  const thresholds = { http_req_failed: ['rate==0'], checks: ['rate==1'] };
  let scenario;
  switch (MODE) {
    case 'closed':
      scenario = { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: DURATION };
      break;
    case 'rate':
      scenario = {
        executor: 'constant-arrival-rate',
        rate: Number(__ENV.RATE || 1000),
        timeUnit: '1s',
        duration: DURATION,
        preAllocatedVUs: Number(__ENV.PRE_VUS || 300),
        maxVUs: Number(__ENV.MAX_VUS || 1000),
      };
      // An arrival the service was too slow to take is an error too.
      thresholds.dropped_iterations = ['count==0'];
      for (const [kind, target] of Object.entries(kinds)) {
        thresholds[`http_req_duration{kind:${kind}}`] = [`p(95)<${TARGETS[target]}`];
      }
      break;
    case 'warmup':
      scenario = {
        executor: 'shared-iterations',
        vus: Number(__ENV.VUS || 64),
        iterations: users.length,
        maxDuration: '5m',
      };
      break;
    default:
      throw new Error(`MODE must be closed, rate or warmup, not ${MODE}`);
  }
  return {
    scenarios: { [MODE]: scenario },
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    // Keep-alive connections, as a service behind a proxy sees them.
    noConnectionReuse: false,
    // No script reads a body (checks look at the status), so k6 need not keep them.
    discardResponseBodies: true,
  };
}

// isWarmup reports whether this run only activates the actors.
export const isWarmup = MODE === 'warmup';

export function getMe(user) {
  const res = http.get(`${API}/me`, params(user, 'profile'));
  ok(res, 200);
  return res;
}

export { http };
