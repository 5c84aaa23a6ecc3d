-- No key with limits of its own: nothing admitted for one.
key_admitted AS (SELECT NULL::uuid AS kid, 0::bigint AS admitted WHERE false)
