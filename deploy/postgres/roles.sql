-- jetsaga's PostgreSQL roles: one per service, owning its own schema and
-- nothing else, and a read-only role for jetsaga check.
--
-- Run it once per database as a superuser (or the database owner), before
-- the services start, e.g.
--   psql "postgres://postgres@db:5432/jetsaga" -f deploy/postgres/roles.sql
-- and set each role's password out of band (ALTER ROLE ... PASSWORD, or your
-- secret manager): nothing secret is in this file. With a database per
-- service, run it in each database; only that service's part matters there.
--
-- Each service runs its own migrations (CREATE SCHEMA IF NOT EXISTS, then
-- its tables) as its role: the schema belongs to the role, so it can, and no
-- other service role can read or write it.

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['jetsaga_order', 'jetsaga_inventory', 'jetsaga_payment', 'jetsaga_readmodel', 'jetsaga_checker'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', r);
    END IF;
  END LOOP;
END $$;

-- Nobody but the owner creates anything in public or in the database.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$ BEGIN EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); END $$;

-- Each service's schema, owned by its role.
CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION jetsaga_order;
CREATE SCHEMA IF NOT EXISTS inventory AUTHORIZATION jetsaga_inventory;
CREATE SCHEMA IF NOT EXISTS payment AUTHORIZATION jetsaga_payment;
CREATE SCHEMA IF NOT EXISTS readmodel AUTHORIZATION jetsaga_readmodel;
ALTER SCHEMA orders OWNER TO jetsaga_order;
ALTER SCHEMA inventory OWNER TO jetsaga_inventory;
ALTER SCHEMA payment OWNER TO jetsaga_payment;
ALTER SCHEMA readmodel OWNER TO jetsaga_readmodel;

-- The read model's rebuild builds readmodel_rebuild beside readmodel and
-- renames them (docs/DESIGN.md, "Rebuild"): it may create schemas.
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO jetsaga_readmodel', current_database()); END $$;

-- The checker reads every service's tables, now and as migrations and
-- rebuilds make them, and writes nothing.
GRANT USAGE ON SCHEMA orders, inventory, payment, readmodel TO jetsaga_checker;
GRANT SELECT ON ALL TABLES IN SCHEMA orders, inventory, payment, readmodel TO jetsaga_checker;
ALTER DEFAULT PRIVILEGES FOR ROLE jetsaga_order GRANT SELECT ON TABLES TO jetsaga_checker;
ALTER DEFAULT PRIVILEGES FOR ROLE jetsaga_inventory GRANT SELECT ON TABLES TO jetsaga_checker;
ALTER DEFAULT PRIVILEGES FOR ROLE jetsaga_payment GRANT SELECT ON TABLES TO jetsaga_checker;
ALTER DEFAULT PRIVILEGES FOR ROLE jetsaga_readmodel GRANT SELECT ON TABLES TO jetsaga_checker;
ALTER DEFAULT PRIVILEGES FOR ROLE jetsaga_readmodel GRANT USAGE ON SCHEMAS TO jetsaga_checker;
ALTER ROLE jetsaga_checker SET default_transaction_read_only = on;
