#!/usr/bin/env bash
# Starts the local services tests may use (PostgreSQL, Redis, NATS) if they are down.
# Commands from shared/DESIGN.md §4. Missing binaries are reported, not fatal:
# tests (scripts/test.sh) then fail with a connection error naming the server.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || echo "warn: PostgreSQL did not start"
fi
if ! up 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || echo "warn: Redis did not start"
fi
if ! up 4222 && [ -x /usr/sbin/nats-server ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || echo "warn: NATS did not start"
fi
for p in 5432 6379 4222; do
  if up "$p"; then echo "port $p: up"; else echo "port $p: down"; fi
done
