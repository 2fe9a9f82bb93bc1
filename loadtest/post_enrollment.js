// POST /api/v1/users/me/enrollments: enroll a random user in a new course (201).
import { http, API, scenarioOptions, randomUser, params, ok, uuid } from './lib.js';

export const options = scenarioOptions({ enrollment: 'enrollment' });

export default function () {
  const body = JSON.stringify({ courseId: uuid() });
  ok(http.post(`${API}/me/enrollments`, body, params(randomUser(), 'enrollment')), 201);
}
