// PUT /api/v1/users/me/enrollments/{courseId}/progress on a seeded enrollment,
// short of 100 so that it never completes.
import { http, API, scenarioOptions, randomLearner, params, ok } from './lib.js';

export const options = scenarioOptions({ enrollment: 'enrollment' });

export default function () {
  const u = randomLearner();
  const course = u.courses[Math.floor(Math.random() * u.courses.length)];
  const body = JSON.stringify({ progress: Math.floor(Math.random() * 990) / 10, timeSpentSeconds: 30 });
  ok(http.put(`${API}/me/enrollments/${course}/progress`, body, params(u, 'enrollment')), 200);
}
