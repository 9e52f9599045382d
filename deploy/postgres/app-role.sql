-- The two PostgreSQL roles of a production deployment (docs/tenancy.md, "Two roles"):
--
--   owner_role (default scim_owner)  owns the tables, the sequences and the policies' functions;
--                                    `flask db upgrade` connects as it (MIGRATION_DATABASE_URL).
--   app_role   (default scim_app)    the service (DATABASE_URL): reads and writes rows, owns
--                                    nothing, neither SUPERUSER nor BYPASSRLS, so that the
--                                    row-level security policies of migration 0009 apply to it.
--
-- Run it with psql as a superuser, connected to the service's database, before the first
-- `flask db upgrade` (both roles must exist for it) and whenever you like after it: it creates
-- what is missing and sets again what is there. Tables and sequences the owner creates later get
-- the service's privileges by themselves (ALTER DEFAULT PRIVILEGES below). Run it again before
-- migrating past a revision that needs an extension it adds: 0011 needs pg_trgm.
--
--   psql -v ON_ERROR_STOP=1 -d scim -f deploy/postgres/app-role.sql \
--        -v owner_password="$OWNER_PASSWORD" -v app_password="$APP_PASSWORD"
--
-- Optional variables: owner_role, app_role (the names), owner_password, app_password (set only
-- when given). On a database whose tables another role owns (one that ran the migrations
-- before, say), they are handed to owner_role. Check the result with
--   SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname IN ('scim_owner', 'scim_app');
-- which this script also prints at the end.

\set ON_ERROR_STOP on
\if :{?owner_role}
\else
\set owner_role scim_owner
\endif
\if :{?app_role}
\else
\set app_role scim_app
\endif

SELECT :'owner_role' = :'app_role' OR current_user IN (:'owner_role', :'app_role') AS clash \gset
\if :clash
DO $$ BEGIN
    RAISE EXCEPTION 'owner_role and app_role must be two roles, neither the one running this';
END $$;
\endif

-- 1. The roles: logins that can do nothing beyond what is granted below.
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_role') AS missing \gset
\if :missing
CREATE ROLE :"owner_role";
\endif
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role') AS missing \gset
\if :missing
CREATE ROLE :"app_role";
\endif
-- Neither bypasses row-level security: migrations see every tenant's rows only by setting
-- scim.tenant to '*' (migrations/env.py does), the service only its tenant's.
ALTER ROLE :"owner_role" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE :"app_role" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
\if :{?owner_password}
ALTER ROLE :"owner_role" PASSWORD :'owner_password';
\endif
\if :{?app_password}
ALTER ROLE :"app_role" PASSWORD :'app_password';
\endif

-- 2. The schema: only the owner creates objects in it (PostgreSQL before 15 let everyone).
SELECT current_database() AS database \gset
GRANT CONNECT ON DATABASE :"database" TO :"owner_role", :"app_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"owner_role";
GRANT USAGE ON SCHEMA public TO :"app_role";

-- The extensions the migrations use, which the owner may not add itself (the console's search,
-- migration 0011: pg_trgm's trigram indexes). A superuser's, in the schema the tables are in.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;

-- 3. What exists already belongs to the owner (serial sequences and indexes follow their table).
--    The policies' functions: scim_tenant_visible (migration 0009) and scim_all_tenants_visible,
--    which it calls (0010); the live counters' trigger functions (0013), which run as the role
--    that writes (the service changes its tenant's counters through them, under the policy).
SELECT format('ALTER TABLE public.%I OWNER TO %I', c.relname, :'owner_role')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
  AND pg_get_userbyid(c.relowner) <> :'owner_role'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner_role')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
  AND p.proname IN ('scim_tenant_visible', 'scim_all_tenants_visible',
                    'scim_live_counts_rows', 'scim_live_counts_update')
  AND pg_get_userbyid(p.proowner) <> :'owner_role'
\gexec

-- The schema revision table, made now if the migrations have not run yet, so that it is the
-- owner's too: the service reads it (the console shows the revision) and never writes it.
SELECT to_regclass('public.alembic_version') IS NULL AS missing \gset
\if :missing
SET ROLE :"owner_role";
CREATE TABLE public.alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
RESET ROLE;
\endif

-- 4. The service's privileges: rows, sequences, the policies' function; nothing else.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_role";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :"app_role";
REVOKE INSERT, UPDATE, DELETE ON public.alembic_version FROM :"app_role";
SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', p.oid::regprocedure),
       format('GRANT EXECUTE ON FUNCTION %s TO %I', p.oid::regprocedure, :'app_role')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname IN ('scim_tenant_visible', 'scim_all_tenants_visible')
\gexec

-- ...and the same for what the owner's migrations create from now on.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO :"app_role";

-- Row-level security applies to a role when both columns say f.
SELECT rolname, rolsuper, rolbypassrls FROM pg_roles
WHERE rolname IN (:'owner_role', :'app_role') ORDER BY rolname;
