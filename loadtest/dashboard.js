// The load behind docs/dashboard/dashboard.png (README, "Operating it"): needs no seed,
// only an admin token: TOKEN=$(go run ./cmd/devtoken -role admin) BASE_URL=http://127.0.0.1:PORT k6 run loadtest/dashboard.js
// Each iteration creates a user, reads it five times and runs one admin search.
import http from 'k6/http';

const H = { headers: { Authorization: `Bearer ${__ENV.TOKEN}`, 'Content-Type': 'application/json' } };
const B = `${__ENV.BASE_URL || 'http://127.0.0.1:3002'}/api/v1/users`;
export const options = { vus: 16, duration: __ENV.DUR || '50s' };

function uuid() {
  return 'xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx'.replace(/x/g, () => Math.floor(Math.random() * 16).toString(16));
}

export default function () {
  const tag = `${__VU}x${__ITER}x${Date.now()}`;
  const r = http.post(B, JSON.stringify({ authId: uuid(), email: `u${tag}@example.com`, firstName: 'Ada', lastName: 'Lovelace', username: `ada_${tag}`.slice(0, 30) }), H);
  if (r.status !== 201) return;
  const id = r.json('data.id');
  for (let i = 0; i < 5; i++) http.get(`${B}/${id}`, H);
  http.get(`${B}?page=1&limit=10`, H);
}
