-- +goose Up
-- Course rosters and course stats (GET /api/v1/courses/{courseId}/...) read a
-- course's enrollments in id order (keyset pagination). Neither column ever
-- changes, so progress updates stay HOT updates.
CREATE INDEX enrollments_course_idx ON enrollments (course_id, id);

-- +goose Down
DROP INDEX enrollments_course_idx;
