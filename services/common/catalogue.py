"""The one catalogue of messages people read, in Vietnamese and English (issue 18, "Vietnamese first").

Data only; services.common.i18n chooses the language and fills the parameters. Each entry maps a
language ("vi", "en") to a text; `{name}` marks a named parameter, the same names in both languages.

- VERDICT_REASONS: every `reason` the Verifier (services.verify_svc.verifier) and the HCERT decoder it
  reports from (services.hcert.decode) produce, keyed by a stable id. The English text is the reason
  exactly as the code writes it: an English reason is matched back to its id by this text, so a change
  of wording there is a change here (tests/common/test_i18n.py fails until both agree).
- TERMS: the values a word-valued parameter takes, translated (an entry type, the event a window counts
  from); every other parameter (hours, days, a claim name, a schema path) is shown as it is.
- VERDICTS: one generic text per verdict, for a reason the catalogue does not know.
- ERROR_REASONS: one text per covidtest.type.v1.ErrorReason (the value name without "ERROR_REASON_"),
  sent as google.rpc.LocalizedMessage beside the English developer message.
- STATUS_CODES: one generic text per gRPC status code, for an error whose reason is not in the contract.

Texts are for the officer, the lab worker and the citizen: short, without personal data.
"""

from __future__ import annotations

Text = dict[str, str]  # language → text

VERDICT_REASONS: dict[str, Text] = {
    # --- the Verifier (services/verify_svc/verifier.py) ---
    "verdict.signing_key_entry_type_not_allowed": {
        "en": "the signing key may not sign {entry_type} entries",
        "vi": "khóa ký này không được phép ký chứng nhận {entry_type}",
    },
    "verdict.issued_outside_signing_certificate_validity": {
        "en": "issued outside the signing certificate's validity",
        "vi": "chứng nhận được cấp ngoài thời hạn hiệu lực của chứng thư số dùng để ký",
    },
    "verdict.unknown_kid": {
        "en": "no trusted signing certificate has this kid",
        "vi": "không có chứng thư số ký tin cậy nào mang mã khóa (kid) này",
    },
    "verdict.signature_not_verified": {
        "en": "no trusted certificate with this kid verifies the signature",
        "vi": "không chứng thư số tin cậy nào mang mã khóa (kid) này xác minh được chữ ký",
    },
    "verdict.revoked": {
        "en": "the issuer revoked this certificate (result corrected)",
        "vi": "cơ quan cấp đã thu hồi chứng nhận này (kết quả đã được đính chính)",
    },
    "verdict.certificate_expired": {
        "en": "the certificate has expired",
        "vi": "chứng nhận đã hết hạn",
    },
    "verdict.issued_after_scan": {
        "en": "the certificate was issued after the scan time",
        "vi": "chứng nhận được cấp sau thời điểm quét",
    },
    "verdict.status_not_checked": {
        "en": "the revocation status could not be checked now",
        "vi": "hiện không kiểm tra được chứng nhận đã bị thu hồi hay chưa",
    },
    "verdict.status_not_on_record": {
        "en": "the issuer's records do not hold this certificate",
        "vi": "hồ sơ của cơ quan cấp không có chứng nhận này",
    },
    "verdict.test_positive": {
        "en": "the test result is positive (detected)",
        "vi": "kết quả xét nghiệm dương tính (phát hiện vi rút)",
    },
    "verdict.test_not_accepted": {
        "en": "this province does not accept this test",
        "vi": "tỉnh này không chấp nhận loại xét nghiệm này",
    },
    "verdict.rat_device_not_approved": {
        "en": "the rapid test device is not on the approved device list",
        "vi": "bộ xét nghiệm nhanh không có trong danh mục thiết bị được phép sử dụng",
    },
    "verdict.sample_time_missing": {
        "en": "the sample collection time is missing",
        "vi": "thiếu thời điểm lấy mẫu",
    },
    "verdict.sample_after_scan": {
        "en": "the sample was collected after the scan time",
        "vi": "mẫu được lấy sau thời điểm quét",
    },
    "verdict.test_too_old": {
        "en": "the test is older than the province accepts ({hours} h)",
        "vi": "kết quả xét nghiệm đã quá thời hạn tỉnh chấp nhận ({hours} giờ)",
    },
    "verdict.vaccination_not_accepted": {
        "en": "this province does not accept vaccination certificates",
        "vi": "tỉnh này không chấp nhận chứng nhận tiêm chủng",
    },
    "verdict.vaccination_series_incomplete": {
        "en": "the vaccination series is not complete",
        "vi": "chưa tiêm đủ số mũi của liệu trình",
    },
    "verdict.recovery_not_accepted": {
        "en": "this province does not accept recovery certificates",
        "vi": "tỉnh này không chấp nhận chứng nhận khỏi bệnh",
    },
    "verdict.event_date_missing": {
        "en": "the {event} date is missing",
        "vi": "thiếu ngày {event}",
    },
    "verdict.too_soon_after_event": {
        "en": "fewer than {days} days since the {event}",
        "vi": "chưa đủ {days} ngày kể từ ngày {event}",
    },
    "verdict.too_long_after_event": {
        "en": "more than {days} days since the {event}",
        "vi": "đã quá {days} ngày kể từ ngày {event}",
    },
    # --- MALFORMED: the decoder's findings (services/hcert/decode.py), stage by stage ---
    "malformed.not_text": {
        "en": "the QR content is not text",
        "vi": "nội dung mã QR không phải là văn bản",
    },
    "malformed.no_prefix": {
        "en": 'the text does not start with the context identifier "HC1:"',
        "vi": 'nội dung không bắt đầu bằng tiền tố nhận dạng "HC1:"',
    },
    "malformed.too_long": {
        "en": "the text is longer than any QR code can hold",
        "vi": "nội dung dài hơn sức chứa của bất kỳ mã QR nào",
    },
    "malformed.base45_non_ascii": {
        "en": "invalid Base45: non-ASCII character",
        "vi": "Base45 không hợp lệ: có ký tự ngoài bảng mã ASCII",
    },
    "malformed.base45_alphabet": {
        "en": "invalid Base45: character outside the alphabet",
        "vi": "Base45 không hợp lệ: có ký tự nằm ngoài bảng chữ cái Base45",
    },
    "malformed.base45_length": {
        "en": "invalid Base45: length leaves a single character",
        "vi": "Base45 không hợp lệ: độ dài để thừa một ký tự lẻ",
    },
    "malformed.base45_group": {
        "en": "invalid Base45: group value too large",
        "vi": "Base45 không hợp lệ: giá trị của một nhóm ký tự quá lớn",
    },
    "malformed.zlib_too_large": {
        "en": "decompresses to more than {max_bytes} bytes",
        "vi": "dữ liệu giải nén ra lớn hơn {max_bytes} byte",
    },
    "malformed.zlib_truncated": {
        "en": "the zlib stream is truncated",
        "vi": "luồng zlib bị cắt cụt",
    },
    "malformed.zlib_trailing_bytes": {
        "en": "bytes after the end of the zlib stream",
        "vi": "có byte thừa sau khi luồng zlib kết thúc",
    },
    "malformed.zlib_invalid": {
        "en": "not a valid zlib stream (broken or not compressed)",
        "vi": "không phải luồng zlib hợp lệ (bị hỏng hoặc không được nén)",
    },
    "malformed.cose_not_cbor": {
        "en": "the decompressed data is not a CBOR item",
        "vi": "dữ liệu sau khi giải nén không phải là một phần tử CBOR",
    },
    "malformed.cose_cwt_tag": {
        "en": "a CWT tag (61) must hold a tagged COSE_Sign1 message (tag 18)",
        "vi": "thẻ CWT (61) phải chứa một thông điệp COSE_Sign1 có gắn thẻ (thẻ 18)",
    },
    "malformed.cose_several_signers": {
        "en": "COSE_Sign (several signers) is not supported, only COSE_Sign1",
        "vi": "không hỗ trợ COSE_Sign (nhiều người ký), chỉ hỗ trợ COSE_Sign1",
    },
    "malformed.cose_tag": {
        "en": "CBOR tag {tag} is not COSE_Sign1 (tag 18)",
        "vi": "thẻ CBOR {tag} không phải là COSE_Sign1 (thẻ 18)",
    },
    "malformed.cose_shape": {
        "en": "COSE_Sign1 must be an array of four items",
        "vi": "COSE_Sign1 phải là một mảng gồm bốn phần tử",
    },
    "malformed.cose_protected_not_bytes": {
        "en": "the protected header is not a byte string",
        "vi": "phần đầu được bảo vệ không phải là chuỗi byte",
    },
    "malformed.cose_unprotected_not_map": {
        "en": "the unprotected header is not a map",
        "vi": "phần đầu không được bảo vệ không phải là bảng ánh xạ (map)",
    },
    "malformed.cose_payload_not_bytes": {
        "en": "the payload is not a byte string (detached payloads are not supported)",
        "vi": "phần nội dung không phải là chuỗi byte (không hỗ trợ nội dung tách rời)",
    },
    "malformed.cose_signature_not_bytes": {
        "en": "the signature is not a byte string",
        "vi": "chữ ký không phải là chuỗi byte",
    },
    "malformed.cose_protected_not_cbor": {
        "en": "the protected header is not valid CBOR",
        "vi": "phần đầu được bảo vệ không phải là CBOR hợp lệ",
    },
    "malformed.cose_protected_not_map": {
        "en": "the protected header is not a map",
        "vi": "phần đầu được bảo vệ không phải là bảng ánh xạ (map)",
    },
    "malformed.cose_no_kid": {
        "en": "no key identifier (kid) in the COSE headers",
        "vi": "phần đầu COSE không có mã định danh khóa (kid)",
    },
    "malformed.cose_kid_length": {
        "en": "the key identifier (kid) is not {length} bytes",
        "vi": "mã định danh khóa (kid) không dài đúng {length} byte",
    },
    "malformed.cose_no_alg": {
        "en": "no signature algorithm (alg) in the COSE headers",
        "vi": "phần đầu COSE không có thuật toán chữ ký (alg)",
    },
    "malformed.cose_alg_unsupported": {
        "en": "unsupported signature algorithm: ES256 (-7), ES384 (-35), ES512 (-36) or PS256 (-37) only",
        "vi": "thuật toán chữ ký không được hỗ trợ: chỉ chấp nhận ES256 (-7), ES384 (-35), ES512 (-36) "
        "hoặc PS256 (-37)",
    },
    "malformed.cbor_payload_not_cbor": {
        "en": "the COSE payload is not valid CBOR",
        "vi": "phần nội dung COSE không phải là CBOR hợp lệ",
    },
    "malformed.cbor_not_claims_map": {
        "en": "the COSE payload is not a CWT claims map",
        "vi": "phần nội dung COSE không phải là bảng các trường (claim) của CWT",
    },
    "malformed.cbor_iss_not_text": {
        "en": "the CWT iss claim is not text",
        "vi": "trường iss của CWT không phải là văn bản",
    },
    "malformed.cbor_claim_missing": {
        "en": "the CWT has no {claim} claim",
        "vi": "CWT thiếu trường {claim}",
    },
    "malformed.cbor_claim_out_of_range": {
        "en": "the CWT {claim} claim is out of range",
        "vi": "trường {claim} của CWT nằm ngoài phạm vi cho phép",
    },
    "malformed.cbor_claim_not_seconds": {
        "en": "the CWT {claim} claim is not a number of seconds",
        "vi": "trường {claim} của CWT không phải là một số giây",
    },
    "malformed.cbor_no_hcert": {
        "en": "the CWT has no hcert claim (-260) map",
        "vi": "CWT không có bảng trường hcert (-260)",
    },
    "malformed.cbor_no_dcc": {
        "en": "the hcert claim holds no DCC map under key 1",
        "vi": "trường hcert không chứa bảng DCC ở khóa 1",
    },
    "malformed.cbor_not_json": {
        "en": "the DCC holds CBOR values that are not JSON data",
        "vi": "DCC chứa giá trị CBOR không phải là dữ liệu JSON",
    },
    "malformed.schema_entry_kind": {
        "en": "the DCC must hold exactly one of t, v or r",
        "vi": "DCC phải chứa đúng một trong các mục t, v hoặc r",
    },
    "malformed.schema_one_entry": {
        "en": "the DCC must hold exactly one entry",
        "vi": "DCC phải chứa đúng một mục",
    },
    "malformed.schema_version_unknown": {
        "en": "the DCC declares no schema version this verifier knows (ver)",
        "vi": "DCC không khai báo phiên bản lược đồ (ver) nào mà hệ thống kiểm tra này biết",
    },
    "malformed.schema_mismatch": {
        "en": "the DCC does not match the schema {version} at {pointer} ({keyword})",
        "vi": "DCC không khớp với lược đồ {version} tại {pointer} ({keyword})",
    },
    "malformed.undecodable": {
        "en": "the data could not be decoded at this step",
        "vi": "không giải mã được dữ liệu ở bước này",
    },
}

TERMS: dict[str, dict[str, Text]] = {
    # The entry a signing key may not sign (the DCC entry type, in lower case).
    "entry_type": {
        "test": {"en": "test", "vi": "xét nghiệm"},
        "vaccination": {"en": "vaccination", "vi": "tiêm chủng"},
        "recovery": {"en": "recovery", "vi": "khỏi bệnh"},
    },
    # The event a vaccination or recovery window counts from.
    "event": {
        "last dose": {"en": "last dose", "vi": "tiêm mũi cuối"},
        "first positive test": {"en": "first positive test", "vi": "xét nghiệm dương tính lần đầu"},
    },
}

VERDICTS: dict[str, Text] = {
    "VALID": {"en": "the certificate is valid", "vi": "chứng nhận hợp lệ"},
    "EXPIRED": {"en": "the certificate is no longer valid", "vi": "chứng nhận đã hết hiệu lực"},
    "NOT_YET_VALID": {"en": "the certificate is not valid yet", "vi": "chứng nhận chưa có hiệu lực"},
    "TEST_POSITIVE": {"en": "the test result is positive", "vi": "kết quả xét nghiệm dương tính"},
    "REVOKED": {"en": "the issuer revoked this certificate", "vi": "cơ quan cấp đã thu hồi chứng nhận này"},
    "RULE_NOT_MET": {
        "en": "the certificate does not meet this province's rules",
        "vi": "chứng nhận không đáp ứng quy định của tỉnh này",
    },
    "SIGNATURE_INVALID": {"en": "the certificate's signature is not valid", "vi": "chữ ký của chứng nhận không hợp lệ"},
    "UNKNOWN_ISSUER": {
        "en": "the issuer is not on the trust list",
        "vi": "cơ quan cấp không có trong danh sách tin cậy",
    },
    "MALFORMED": {
        "en": "the QR code is not a readable health certificate",
        "vi": "mã QR không phải là chứng nhận y tế đọc được",
    },
    "STATUS_UNKNOWN": {
        "en": "whether the certificate was revoked is not known now",
        "vi": "hiện chưa xác định được chứng nhận đã bị thu hồi hay chưa",
    },
}

ERROR_REASONS: dict[str, Text] = {
    "CREDENTIAL_MISSING": {
        "en": "No credential was sent: use an access token or a client certificate.",
        "vi": "Chưa gửi thông tin xác thực: hãy dùng mã truy cập (token) hoặc chứng thư số của máy khách.",
    },
    "CREDENTIAL_INVALID": {
        "en": "The credential is unknown, malformed, expired or revoked.",
        "vi": "Thông tin xác thực không được nhận ra, sai định dạng, đã hết hạn hoặc đã bị thu hồi.",
    },
    "ROLE_NOT_ALLOWED": {
        "en": "Your role may not use this function.",
        "vi": "Vai trò của bạn không được phép dùng chức năng này.",
    },
    "SCOPE_NOT_ALLOWED": {
        "en": "You may not access this item.",
        "vi": "Bạn không có quyền truy cập mục này.",
    },
    "RATE_LIMITED": {
        "en": "Too many requests; wait a moment and try again.",
        "vi": "Quá nhiều yêu cầu; vui lòng chờ một lát rồi thử lại.",
    },
    "REQUEST_ID_REUSED": {
        "en": "This request id was already used for a different request; use a new one.",
        "vi": "Mã yêu cầu (request_id) này đã được dùng cho một yêu cầu khác; hãy dùng mã mới.",
    },
    "INVALID_ARGUMENT": {
        "en": "The request has invalid fields; see the details of each field.",
        "vi": "Yêu cầu có trường không hợp lệ; xem chi tiết từng trường.",
    },
    "STORAGE_UNAVAILABLE": {
        "en": "The database cannot be reached right now; try again shortly.",
        "vi": "Hiện không kết nối được cơ sở dữ liệu; vui lòng thử lại sau giây lát.",
    },
    "SERVER_UNAVAILABLE": {
        "en": "The service is temporarily unavailable; try again shortly.",
        "vi": "Dịch vụ tạm thời chưa sẵn sàng; vui lòng thử lại sau giây lát.",
    },
    "INTERNAL": {
        "en": "An internal error occurred; quote the request id to support.",
        "vi": "Đã xảy ra lỗi nội bộ; hãy báo mã yêu cầu cho bộ phận hỗ trợ.",
    },
    "NOT_IMPLEMENTED_YET": {
        "en": "This function is not available in this release yet.",
        "vi": "Chức năng này chưa có trong phiên bản hiện tại.",
    },
    "REQUEST_TOO_LARGE": {
        "en": "The request is too large.",
        "vi": "Yêu cầu quá lớn.",
    },
    "ROUTE_NOT_FOUND": {
        "en": "There is no such address in the API.",
        "vi": "Không có địa chỉ này trong API.",
    },
    "FIELD_REQUIRED": {
        "en": "A required field is empty.",
        "vi": "Trường bắt buộc đang để trống.",
    },
    "FIELD_FORMAT_INVALID": {
        "en": "The value does not have the required format.",
        "vi": "Giá trị không đúng định dạng quy định.",
    },
    "FIELD_OUT_OF_RANGE": {
        "en": "The value is outside the allowed range.",
        "vi": "Giá trị nằm ngoài phạm vi cho phép.",
    },
    "FIELD_NOT_ALLOWED": {
        "en": "This field must be empty here.",
        "vi": "Trường này phải để trống trong trường hợp này.",
    },
    "TIME_IN_FUTURE": {
        "en": "The time lies in the future.",
        "vi": "Thời gian nhập vào nằm ở tương lai.",
    },
    "TIME_TOO_OLD": {
        "en": "The time lies too far in the past.",
        "vi": "Thời gian nhập vào đã quá xa trong quá khứ.",
    },
    "VALUE_NOT_IN_VALUE_SET": {
        "en": "The value is not in the list of permitted values.",
        "vi": "Giá trị không có trong danh mục được phép.",
    },
    "TOO_MANY_ITEMS": {
        "en": "The list has too many items.",
        "vi": "Danh sách có quá nhiều mục.",
    },
    "DUPLICATE_IN_REQUEST": {
        "en": "The same key (a barcode, for example) appears earlier in this request.",
        "vi": "Mã này (ví dụ mã vạch) bị trùng với một mục phía trước trong cùng yêu cầu.",
    },
    "PAGE_TOKEN_INVALID": {
        "en": "The page token is invalid or expired; start again from the first page.",
        "vi": "Mã trang (page_token) không hợp lệ hoặc đã hết hạn; hãy bắt đầu lại từ trang đầu.",
    },
    "LAB_NOT_FOUND": {
        "en": "The laboratory is not registered.",
        "vi": "Phòng xét nghiệm chưa được đăng ký.",
    },
    "SAMPLE_BARCODE_CONFLICT": {
        "en": "This barcode is already registered with different data.",
        "vi": "Mã vạch này đã được đăng ký với thông tin khác.",
    },
    "SAMPLE_NOT_FOUND": {
        "en": "The sample was not found.",
        "vi": "Không tìm thấy mẫu.",
    },
    "SAMPLE_BARCODE_AMBIGUOUS": {
        "en": "Several sampling units use this barcode; name the sampling unit.",
        "vi": "Nhiều đơn vị lấy mẫu dùng chung mã vạch này; hãy ghi rõ đơn vị lấy mẫu.",
    },
    "SAMPLE_ASSIGNED_TO_OTHER_LAB": {
        "en": "The sample was sent to another laboratory.",
        "vi": "Mẫu đã được gửi đến phòng xét nghiệm khác.",
    },
    "SAMPLE_ALREADY_RESULTED": {
        "en": "The sample already has a different result; correct it with an amendment.",
        "vi": "Mẫu đã có kết quả khác; hãy đính chính kết quả.",
    },
    "SAMPLE_IS_POOLED": {
        "en": "The sample belongs to a pool; record the result for the pool.",
        "vi": "Mẫu thuộc một mẫu gộp; hãy ghi kết quả cho mẫu gộp.",
    },
    "SAMPLE_NOT_RESULTED": {
        "en": "The sample has no result yet.",
        "vi": "Mẫu chưa có kết quả.",
    },
    "SAMPLE_WITHDRAWN": {
        "en": "The sample's result was withdrawn and can no longer change.",
        "vi": "Kết quả của mẫu đã bị rút lại và không thể thay đổi nữa.",
    },
    "AMENDMENT_NO_CHANGE": {
        "en": "The amendment changes nothing.",
        "vi": "Nội dung đính chính không thay đổi gì so với kết quả hiện tại.",
    },
    "POOL_NOT_FOUND": {
        "en": "No pool with this barcode is waiting for a result.",
        "vi": "Không có mẫu gộp nào mang mã vạch này đang chờ kết quả.",
    },
    "POOL_FULL": {
        "en": "The pool already holds the most samples allowed.",
        "vi": "Mẫu gộp đã đủ số mẫu tối đa.",
    },
    "POOL_CLOSED": {
        "en": "The pool already has a result; no sample can be added.",
        "vi": "Mẫu gộp đã có kết quả; không thể thêm mẫu.",
    },
    "POOL_MISMATCH": {
        "en": "The sample's laboratory or test type differs from the pool's.",
        "vi": "Phòng xét nghiệm hoặc loại xét nghiệm của mẫu khác với mẫu gộp.",
    },
    "POOL_NOT_ALLOWED": {
        "en": "This sample may not be pooled.",
        "vi": "Mẫu này không được phép gộp.",
    },
    "RETEST_OF_NOT_FOUND": {
        "en": "The original sample of the retest was not found.",
        "vi": "Không tìm thấy mẫu gốc của lần xét nghiệm lại.",
    },
    "RETEST_OF_STATE_INVALID": {
        "en": "The original sample does not call for a retest.",
        "vi": "Mẫu gốc không ở trạng thái cần xét nghiệm lại.",
    },
    "RETEST_PERSON_MISMATCH": {
        "en": "The person of the retest differs from the person of the original sample.",
        "vi": "Người được xét nghiệm lại không khớp với người của mẫu gốc.",
    },
    "TESTED_BEFORE_COLLECTED": {
        "en": "The test time is before the sample collection time.",
        "vi": "Thời điểm xét nghiệm sớm hơn thời điểm lấy mẫu.",
    },
    "POSITION_OUT_OF_RANGE": {
        "en": "The feed position is out of range.",
        "vi": "Vị trí trong luồng dữ liệu nằm ngoài phạm vi.",
    },
    "STREAM_LIMIT_EXCEEDED": {
        "en": "Too many feed streams are open at once.",
        "vi": "Đang mở quá nhiều luồng dữ liệu cùng lúc.",
    },
    "CERTIFICATE_NOT_FOUND": {
        "en": "The certificate was not found.",
        "vi": "Không tìm thấy chứng nhận.",
    },
    "PERSONAL_DATA_ERASED": {
        "en": "This personal data was erased under the retention policy.",
        "vi": "Dữ liệu cá nhân này đã được xóa theo chính sách lưu trữ dữ liệu.",
    },
    "PARTNER_NOT_FOUND": {
        "en": "The partner was not found.",
        "vi": "Không tìm thấy đối tác.",
    },
    "BUNDLE_NOT_ISSUED": {
        "en": "No checkpoint bundle has been issued yet; verify online and try again later.",
        "vi": "Chưa phát hành gói dữ liệu cho chốt kiểm soát; hãy kiểm tra trực tuyến và thử lại sau.",
    },
    "PERSONAL_DATA_NOT_ENTITLED": {
        "en": "You are not entitled to personal data.",
        "vi": "Bạn không được cấp quyền truy cập dữ liệu cá nhân.",
    },
    "ORGANISATION_EXISTS": {
        "en": "An organisation with this name already exists in the province.",
        "vi": "Trong tỉnh đã có tổ chức mang tên này.",
    },
    "PARTNER_EXISTS": {
        "en": "A partner with this name already exists.",
        "vi": "Đã có đối tác mang tên này.",
    },
    "DEVICE_EXISTS": {
        "en": "A checkpoint device with this name already exists in the province.",
        "vi": "Trong tỉnh đã có thiết bị kiểm soát mang tên này.",
    },
    "PRINCIPAL_NOT_FOUND": {
        "en": "The organisation, partner or device was not found.",
        "vi": "Không tìm thấy tổ chức, đối tác hoặc thiết bị.",
    },
    "ROLE_NOT_ALLOWED_FOR_PRINCIPAL": {
        "en": "This role cannot be granted to this kind of organisation, partner or device.",
        "vi": "Không thể cấp vai trò này cho loại tổ chức, đối tác hoặc thiết bị này.",
    },
    "CREDENTIAL_NOT_FOUND": {
        "en": "The credential was not found.",
        "vi": "Không tìm thấy thông tin xác thực.",
    },
    "CERTIFICATE_INVALID": {
        "en": "The certificate cannot be read as X.509.",
        "vi": "Không đọc được chứng thư số theo chuẩn X.509.",
    },
    "CERTIFICATE_EXPIRED": {
        "en": "The certificate has expired.",
        "vi": "Chứng thư số đã hết hạn.",
    },
    "CERTIFICATE_EXISTS": {
        "en": "This certificate is already registered.",
        "vi": "Chứng thư số này đã được đăng ký.",
    },
    "CERTIFICATE_COUNTRY_MISMATCH": {
        "en": "The certificate's country differs from the country given.",
        "vi": "Quốc gia trong chứng thư số khác với quốc gia đã khai báo.",
    },
    "PRIVATE_KEY_INVALID": {
        "en": "The private key cannot be read or is not of a supported kind.",
        "vi": "Không đọc được khóa bí mật hoặc loại khóa không được hỗ trợ.",
    },
    "KEY_CERTIFICATE_MISMATCH": {
        "en": "The certificate does not belong to the private key.",
        "vi": "Chứng thư số không khớp với khóa bí mật.",
    },
    "SIGNING_KEY_NOT_FOUND": {
        "en": "The signing key was not found.",
        "vi": "Không tìm thấy khóa ký.",
    },
    "SIGNING_KEY_STATE_INVALID": {
        "en": "The signing key's state does not allow this operation.",
        "vi": "Trạng thái của khóa ký không cho phép thao tác này.",
    },
    "SIGNING_KEY_IN_USE": {
        "en": "The signing key still has certificates that have not expired.",
        "vi": "Khóa ký vẫn còn chứng nhận chưa hết hạn.",
    },
    "TRUSTED_CERTIFICATE_NOT_FOUND": {
        "en": "The trusted certificate was not found.",
        "vi": "Không tìm thấy chứng thư số tin cậy.",
    },
}

STATUS_CODES: dict[str, Text] = {
    "CANCELLED": {"en": "The request was cancelled.", "vi": "Yêu cầu đã bị hủy."},
    "UNKNOWN": {"en": "An unknown error occurred.", "vi": "Đã xảy ra lỗi không xác định."},
    "INVALID_ARGUMENT": {"en": "The request is invalid.", "vi": "Yêu cầu không hợp lệ."},
    "DEADLINE_EXCEEDED": {"en": "The request took too long.", "vi": "Yêu cầu đã quá thời gian chờ."},
    "NOT_FOUND": {"en": "The requested item was not found.", "vi": "Không tìm thấy mục được yêu cầu."},
    "ALREADY_EXISTS": {"en": "The item already exists.", "vi": "Mục này đã tồn tại."},
    "PERMISSION_DENIED": {
        "en": "You do not have permission for this.",
        "vi": "Bạn không có quyền thực hiện thao tác này.",
    },
    "RESOURCE_EXHAUSTED": {
        "en": "A limit was reached; try again later.",
        "vi": "Đã vượt quá giới hạn cho phép; vui lòng thử lại sau.",
    },
    "FAILED_PRECONDITION": {
        "en": "The operation is not possible in the current state.",
        "vi": "Không thể thực hiện thao tác ở trạng thái hiện tại.",
    },
    "ABORTED": {"en": "The operation was interrupted; try again.", "vi": "Thao tác bị gián đoạn; vui lòng thử lại."},
    "OUT_OF_RANGE": {"en": "The value is out of range.", "vi": "Giá trị nằm ngoài phạm vi."},
    "UNIMPLEMENTED": {"en": "This function is not available.", "vi": "Chức năng này chưa được hỗ trợ."},
    "INTERNAL": {"en": "An internal error occurred.", "vi": "Đã xảy ra lỗi nội bộ."},
    "UNAVAILABLE": {
        "en": "The service is temporarily unavailable; try again shortly.",
        "vi": "Dịch vụ tạm thời không khả dụng; vui lòng thử lại sau giây lát.",
    },
    "DATA_LOSS": {"en": "Data was lost or damaged.", "vi": "Dữ liệu bị mất hoặc bị hỏng."},
    "UNAUTHENTICATED": {
        "en": "You are not signed in, or your credential is not valid.",
        "vi": "Chưa xác thực, hoặc thông tin xác thực không hợp lệ.",
    },
}
