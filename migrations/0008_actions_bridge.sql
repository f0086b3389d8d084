-- BRIDGE FOR THE `actions` BRANCH ONLY: DELETE THIS FILE (and its rollback) WHEN MERGING.
-- The `schema` branch's migrations create the real `actions` registry (COMMON.md §2); this
-- stand-in gives the actions branch's collector the table its `action_registry` query reads,
-- with the shipped rows (the values of mailroom.actions.STANDARD_SPECS), so that its tests run
-- before that merge. Merged with the real migration it fails loudly (the table exists).
-- depends: 0007_deliverability

CREATE TABLE actions (
    name       text PRIMARY KEY,
    number     smallint NOT NULL UNIQUE,
    path       text NOT NULL,
    signs_code boolean NOT NULL DEFAULT false,
    link       boolean NOT NULL DEFAULT true,
    lifetime   interval NOT NULL DEFAULT interval '15 minutes',
    cooldown   interval,
    statuses   text[]
);
INSERT INTO actions (name, number, path, signs_code, link, lifetime, cooldown, statuses) VALUES
    ('activation',        1, '/activate',     false, true,  interval '15 minutes', NULL, '{provisioned}'),
    ('password_recovery', 2, '/recover',      true,  true,  interval '15 minutes', NULL, '{active}'),
    ('email_change',      3, '/email-change', false, true,  interval '1 hour',     NULL, '{active}'),
    ('magic_link',        4, '/magic-link',   false, true,  interval '15 minutes', NULL, '{active}'),
    ('invitation',        5, '/invitation',   false, true,  interval '7 days',     NULL, NULL),
    ('welcome',           6, '/welcome',      false, false, interval '1 day',      NULL, '{active}');
