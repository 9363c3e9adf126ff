-- The national default rules (province "00"), used where a province has no rule of its own:
-- a negative NAAT (RT-PCR) test is accepted for 72 hours after sample collection, a negative rapid
-- antigen test for 24 hours. Operators change them with new versions (AdminService.SetProvinceRule).
INSERT INTO province_rules (rule_id, province_code, entry_type, test_type, validity_seconds, accepted_outcomes,
                            effective_from, description)
VALUES ('9c1f4f3e-0a52-4d36-9a0e-6c8d8f6d0001', '00', 'TEST', 'NAAT', 72 * 3600, '{NEGATIVE}', '2021-10-01T00:00:00+07',
        'National default: negative RT-PCR/NAAT accepted for 72 h from sample collection'),
       ('9c1f4f3e-0a52-4d36-9a0e-6c8d8f6d0002', '00', 'TEST', 'RAPID_ANTIGEN', 24 * 3600, '{NEGATIVE}',
        '2021-10-01T00:00:00+07', 'National default: negative rapid antigen test accepted for 24 h from sample collection');
