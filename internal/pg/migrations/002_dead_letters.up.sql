-- Every message a consumer dead-lettered, recorded in the service's own
-- database as well as in the DLQ stream: a purge of the stream does not hide
-- it, and a dead letter that could not be published at all (published =
-- false) is still accounted for. jetsaga check reports both.
CREATE TABLE dead_letters (
    consumer      text        NOT NULL,
    stream        text        NOT NULL,
    stream_seq    bigint      NOT NULL,
    subject       text        NOT NULL, -- the original subject, truncated
    event_id      text        NOT NULL DEFAULT '',
    event_type    text        NOT NULL DEFAULT '',
    order_id      text        NOT NULL DEFAULT '',
    deliveries    bigint      NOT NULL,
    error         text        NOT NULL,
    body_size     bigint      NOT NULL,
    body_sha256   text        NOT NULL,
    dlq_subject   text        NOT NULL,
    dlq_msg_id    text        NOT NULL, -- the dead letter's Nats-Msg-Id in the DLQ stream
    published     boolean     NOT NULL, -- false: the DLQ publish failed after retries
    publish_error text        NOT NULL DEFAULT '',
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream, stream_seq)
);
