// Package access defines the access record: the entry that Vitrine's access
// gateway appends to a region's access log before it releases any user
// data, and that independent verifiers (the supervisor, auditors, anyone
// following the log) read back.
//
// # Format
//
// A record is one compact JSON object, UTF-8, with no whitespace and with
// its keys in exactly this order:
//
//	{"v":1,"kind":"access","time":"2026-11-22T10:00:00.123Z","region":"zurich",
//	 "principal":{"id":"analyst:jdoe","role":"analyst","location":"CH"},
//	 "action":"read","resource":{"dataset":"telemetry","query":"sha256=…","count":17,"digest":"sha256:…"},
//	 "justification":{"code":"CUSTOMER_INITIATED_SUPPORT","detail":"case 1234"},
//	 "subjects":["hmac-sha256:…"],"request":"…","outcome":"granted",
//	 "keys":["sha256:…"],"reason":"…"}
//
// (wrapped here for reading; a record is a single line). The fields:
//
//   - v is the format version, 1; kind is "access".
//   - time is when the gateway decided, in UTC with exactly three
//     fractional digits, from 1970 to 9999.
//   - region is the region whose log holds the record and whose data was
//     accessed: a lower-case letter followed by up to 31 lower-case
//     letters, digits and hyphens.
//   - principal is who asked: an id, a role and a home location (an ISO
//     3166-1 alpha-2 code). All three are empty only for a denied attempt
//     that carried no valid credential.
//   - action is read, export, delete, process, relocate, or denied.
//   - resource names what was asked for (dataset and query, free text),
//     how many records were released (count) and which ones (digest, see
//     below).
//   - justification is the code and detail the principal gave in the
//     [Header] header (see [ParseJustification]); the code is one of
//     [Codes]. It is empty only in a denied record, since a missing
//     justification is itself a reason for denial.
//   - subjects are the data subjects whose data the access touched, as
//     pseudonyms "hmac-sha256:" and 64 lower-case hex digits (the HMAC of
//     the subject's identifier under the supervisor's pseudonymisation
//     key), in ascending order without duplicates. The key is always
//     present; [] when there are none.
//   - request is the gateway's request id.
//   - outcome is "denied" for a record with action "denied" and "granted"
//     for every other action.
//   - keys (an extension, omitted when empty) lists the data keys this
//     access may unwrap, as "sha256:" and 64 lower-case hex digits, in
//     ascending order without duplicates.
//   - reason (an extension, omitted when empty) says why a denied attempt
//     was denied.
//
// A denied attempt releases nothing: its count is 0, its digest is the
// digest of no ids, and it has no keys. Only a denied record has a reason.
//
// # Other kinds of entry
//
// An access log holds other entries beside records, each a JSON object
// whose first keys are "v" and "kind" ([EntryKind] tells them apart):
// [Commitment]s to a region's dataset, [DeniedSummary]s, and [Grant]s. A
// reader skips, or reports, the kinds it does not know, since kinds are
// added over time.
//
// Every grant and revocation of a principal's credential is a [Grant]
// entry (kind "grant") in the access log of each region the principal may
// act in, appended before it takes effect; after a revocation the log
// takes no granted access record of the principal. So a verifier reading
// one access log checks every granted record against the grant entries
// before it ([Grant.Covers]): the last one for the record's principal
// must be a grant of its role and location, made no later than the
// access, that had not expired by then.
//
// Attempts that carry no valid credential (anyone can make them) are
// logged as denied records up to a small rate per source network, and
// beyond it counted, by attempted action, reason and source network, in
// denied summaries. Every such attempt is in exactly one of the two: a
// verifier counting attempts adds the summaries' counts to the denied
// records. Attempts with a valid credential always have a record of their
// own.
//
// # Canonical encoding
//
// Every record has exactly one encoding, the one [Record.Marshal] writes,
// so that the bytes in the log are a function of the record. Strings are
// valid UTF-8 without control characters (U+0000–U+001F, U+007F–U+009F);
// inside them only the quotation mark and the backslash are escaped, as \"
// and \\, and every other character is written as itself. Numbers are
// plain decimal integers without sign, leading zeros, fraction or
// exponent. [Parse] accepts exactly these bytes: any other spelling of the
// same record (whitespace, other escapes, another key order, duplicate or
// unknown keys, an empty optional key) is rejected, with an error that
// says what is wrong.
//
// A record is at most [MaxSize] bytes, the largest entry a C2SP tlog-tiles
// log can hold.
//
// # Digest
//
// The resource digest commits to the ids of the records an access released
// without revealing them. It is "sha256:" followed by the lower-case hex
// SHA-256 of the distinct ids in ascending order (as signed 64-bit
// integers), each written as 8 bytes big-endian two's complement, with
// nothing between them. The digest of no ids is the SHA-256 of the empty
// string. A verifier who is shown the released records recomputes it with
// [Digest].
//
// # Headers
//
// A client states its justification in the [Header] request header,
// "Vitrine-Justification: <CODE>; <detail>". The gateway answers released
// data with a [ReceiptHeader] header carrying the receipt: the origin of
// the region's access log and the index of the access record in it,
// separated by one space ("vitrine.local/logs/access-zurich 12"), which
// the client can check with an inclusion proof. An attempt without a valid credential that was
// counted instead of logged on its own has no receipt: the answer says
// that the log's next denied summary counts it.
package access

// Header is the request header that carries a justification,
// "<CODE>; <detail>"; see [ParseJustification].
const Header = "Vitrine-Justification"

// ReceiptHeader is the response header in which the access gateway returns
// the receipt of an access: "<log origin> <index>" of its access record.
const ReceiptHeader = "Vitrine-Access-Receipt"
