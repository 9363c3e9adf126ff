-- The relay leader's lease (one row). A replica leads while it holds the current epoch: taking over an
-- expired lease adds one to the epoch, and every relay batch renews the lease for its own epoch under the
-- row lock in the same transaction, so a deposed leader (frozen, partitioned) can never commit a batch
-- once another replica has taken over. Times are Postgres's clock, the same for every replica. A standby
-- also takes over at once when the leader's session has ended (its process or host died).
CREATE TABLE relay_lease (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    holder      text NOT NULL DEFAULT '',          -- host:pid of the leader (for operators)
    holder_backend integer,                        -- the leader's Postgres backend: gone means it died
    acquired_at timestamptz,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO relay_lease DEFAULT VALUES;

-- Which leader's batch wrote each event (events before this migration: NULL).
ALTER TABLE feed_events ADD COLUMN relay_epoch bigint;
