// Package deploy holds no Go code: it is the home of the operator's files
// (Prometheus alert rules, the Grafana dashboard and its provisioning) and of
// the tests that check them in `make test`: promtool check/test rules here, and
// the metric names of every expression against a real scrape in
// cmd/userservice (TestE2EOperatorMetrics). See docs/operations.md.
package deploy
