-- The printable certificate (issue 18): every PDF of a certificate rendered, by a partner's
-- GetCertificateDocument or an operator's `certificate document` command, is one read-audit row with
-- its own purpose, DOCUMENT_RENDER (the certificate's result id; the paper size in `detail`).
-- NOT VALID: the new check only widens the old one, so the existing rows need no scan (which would hold
-- the table's lock, and so every audited read, for as long as it takes); new rows are checked as before.
ALTER TABLE personal_data_reads DROP CONSTRAINT personal_data_reads_purpose_check;
ALTER TABLE personal_data_reads ADD CONSTRAINT personal_data_reads_purpose_check
    CHECK (purpose IN ('CITIZEN_LOOKUP', 'QR_RENDER', 'FEED_DELIVERY', 'DOCUMENT_RENDER')) NOT VALID;
