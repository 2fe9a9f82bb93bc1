// A realistic mix: mostly reads, some progress updates and enrollments, a trickle
// of profile and preference writes and of admin searches. Weights are per request.
import { http, API, scenarioOptions, randomUser, randomLearner, randomAdmin, params, ok, uuid, searchQuery, getMe } from './lib.js';

export const options = scenarioOptions({ profile: 'profile', enrollment: 'enrollment', search: 'search' });

// [weight, request]; the weights sum to 1000.
const requests = [
  [600, () => getMe(randomUser())],
  [120, () => ok(http.get(`${API}/me/preferences`, params(randomUser(), 'profile')), 200)],
  [80, () => ok(http.get(`${API}/me/enrollments`, params(randomUser(), 'enrollment')), 200)],
  [100, () => {
    const u = randomLearner();
    const course = u.courses[Math.floor(Math.random() * u.courses.length)];
    const body = JSON.stringify({ progress: Math.floor(Math.random() * 990) / 10, timeSpentSeconds: 30 });
    ok(http.put(`${API}/me/enrollments/${course}/progress`, body, params(u, 'enrollment')), 200);
  }],
  [40, () => ok(http.post(`${API}/me/enrollments`, JSON.stringify({ courseId: uuid() }), params(randomUser(), 'enrollment')), 201)],
  [30, () => ok(http.put(`${API}/me`, JSON.stringify({ bio: `bio ${Math.random()}` }), params(randomUser(), 'profile')), 200)],
  [25, () => ok(http.put(`${API}/me/preferences/ui`, JSON.stringify({ preferences: [{ key: 'theme', value: 'dark' }] }), params(randomUser(), 'profile')), 200)],
  [5, () => ok(http.get(`${API}?${searchQuery()}`, params(randomAdmin(), 'search')), 200)],
];

export default function () {
  let r = Math.random() * 1000;
  for (const [w, f] of requests) {
    r -= w;
    if (r < 0) {
      f();
      return;
    }
  }
  requests[0][1]();
}
