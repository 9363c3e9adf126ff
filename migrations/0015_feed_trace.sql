-- Traces (services.common.tracing): a feed event keeps the trace context of the relay span that published
-- it (a W3C traceparent: ids only, never personal data), so delivering it to a partner continues the trace
-- that began at intake. NULL when tracing was off.
ALTER TABLE feed_events ADD COLUMN traceparent text CHECK (length(traceparent) <= 64);

GRANT SELECT (traceparent), INSERT (traceparent) ON feed_events TO covidtest_publish;
