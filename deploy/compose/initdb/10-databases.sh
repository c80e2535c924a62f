#!/bin/sh
# A database per service, each with jetsaga's roles (deploy/postgres/roles.sql).
# Passwords come from the secrets' .pgpass files (host:port:db:user:password).
set -eu
for s in order inventory payment readmodel; do
	psql -v ON_ERROR_STOP=1 -U postgres -c "CREATE DATABASE jetsaga_$s"
	psql -v ON_ERROR_STOP=1 -U postgres -d "jetsaga_$s" -f /etc/jetsaga/postgres/roles.sql
	pw=$(cut -d: -f5 "/run/secrets/${s}_pgpass")
	echo "ALTER ROLE jetsaga_$s PASSWORD :'pw'" | psql -v ON_ERROR_STOP=1 -U postgres -v pw="$pw"
done
