-- BRIDGE FOR THE `actions` BRANCH ONLY: delete with 0008_actions_bridge.sql when merging.
DROP TABLE IF EXISTS actions;
