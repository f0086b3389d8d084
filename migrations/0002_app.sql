-- The app's side: consuming the token behind a link that came back.
-- depends: 0001_schema

-- Consume a token: the account id when `token_secret` names a token that exists, is
-- unexpired and unconsumed, whose account is in the state the action is for (activation:
-- provisioned; password_recovery: active) and, for password recovery, whose code is
-- `token_code`; NULL otherwise. Activation ignores the code (pass NULL).
--
-- One UPDATE: the token's row lock makes concurrent consumers of the same token take
-- turns, and the one that waited re-checks `consumed_at IS NULL` on the committed row and
-- finds nothing, so exactly one of them gets the account id. Setting consumed_at fires
-- tokens_consumed, which activates the provisioned account of an activation token in the
-- same transaction.
--
-- The code comparison is an ordinary `=`: it runs only on the one row the 32-byte random
-- secret found through its unique index, so timing it tells nothing to someone who does
-- not already hold the secret, and apps verify the link's HMAC (which covers the code)
-- before they get here. The secret lookup itself is a B-tree search: its timing does not
-- reveal a usable secret (256 random bits), and apps only pass secrets that verified.
CREATE FUNCTION mailroom_consume_token(token_secret bytea, token_code text DEFAULT NULL) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    UPDATE tokens t
       SET consumed_at = now()
      FROM accounts a
     WHERE t.secret = token_secret
       AND t.consumed_at IS NULL
       AND t.expires_at > now()
       AND a.id = t.account
       AND CASE t.action
               WHEN 'activation' THEN a.status = 'provisioned'
               WHEN 'password_recovery' THEN a.status = 'active' AND t.code = token_code
           END
    RETURNING t.account
$$;
