-- Hands the application schema to the application role (the role's quoted name and its name are put
-- in for the two placeholders before it runs): the schema itself, then every table, sequence, view and function in it that another role owns (objects
-- made when the server still connected as the superuser). Indexes and triggers follow their tables.
-- Run by the superuser in the application database on every start; changes nothing the second time.
ALTER SCHEMA public OWNER TO {role};
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.relname AS name,
               CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                              WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND pg_get_userbyid(c.relowner) <> '{role_name}'
          -- a sequence owned by a table column changes hands with its table
          AND NOT (c.relkind = 'S' AND EXISTS (
                SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s public.%I OWNER TO {role}', object.kind, object.name);
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure::text AS name
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{role_name}'
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {role}', object.name);
    END LOOP;
END $$;
