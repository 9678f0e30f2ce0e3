// Package testenv gives tests the addresses of the services they need (read
// from environment variables, with the local defaults) and decides what a
// missing service means: a skip on a developer machine, a failure under
// CI=true.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// Environment variables naming the services, and their defaults.
const (
	PostgresEnv     = "GOCAP_POSTGRES_URL"
	PostgresDefault = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	MySQLEnv        = "GOCAP_MYSQL_DSN"
	MySQLDefault    = "root@tcp(127.0.0.1:3306)/test"
	AMQPEnv         = "GOCAP_AMQP_URL"
	AMQPDefault     = "amqp://guest:guest@127.0.0.1:5672/"
	NATSEnv         = "GOCAP_NATS_URL"
	NATSDefault     = "nats://127.0.0.1:4222"
	RedisEnv        = "GOCAP_REDIS_ADDR"
	RedisDefault    = "127.0.0.1:6379"
)

// CI reports whether the tests run under CI (CI=true), where every service
// is required.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// PostgresURL returns the PostgreSQL connection string for tests, or skips
// (fails under CI) when the server does not answer.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := value(PostgresEnv, PostgresDefault)
	require(t, PostgresEnv, hostPort(u, "5432"))
	return u
}

// MySQLDSN returns the go-sql-driver/mysql DSN for tests, or skips (fails
// under CI) when the server does not answer.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn := value(MySQLEnv, MySQLDefault)
	addr := "127.0.0.1:3306"
	if i := strings.Index(dsn, "tcp("); i >= 0 {
		if j := strings.Index(dsn[i:], ")"); j > 0 {
			addr = dsn[i+4 : i+j]
		}
	}
	require(t, MySQLEnv, addr)
	return dsn
}

// AMQPURL returns the RabbitMQ URL for tests, or skips (fails under CI)
// when the broker does not answer.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := value(AMQPEnv, AMQPDefault)
	require(t, AMQPEnv, hostPort(u, "5672"))
	return u
}

// NATSURL returns the NATS server URL (JetStream enabled) for tests, or
// skips (fails under CI) when the server does not answer.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := value(NATSEnv, NATSDefault)
	require(t, NATSEnv, hostPort(u, "4222"))
	return u
}

// RedisAddr returns the Redis address (host:port) for tests, or skips
// (fails under CI) when the server does not answer.
func RedisAddr(t testing.TB) string {
	t.Helper()
	a := value(RedisEnv, RedisDefault)
	require(t, RedisEnv, a)
	return a
}

// Name returns a name unique to this test run, for tables, schemas, queues
// and exchanges: prefix, an underscore and 12 random hex digits.
func Name(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

func value(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

func hostPort(rawURL, defPort string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "127.0.0.1:" + defPort
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), defPort)
	}
	return u.Host
}

func require(t testing.TB, env, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if CI() {
		t.Fatalf("service %s at %s is required under CI=true and does not answer: %v", env, addr, err)
	}
	t.Skipf("no service at %s (%v); set %s to run this test", addr, err, env)
}
