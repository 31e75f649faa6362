"""Drives the emulator with simple-salesforce, unchanged, the way an integrator would.

Usage: simple_salesforce_client.py BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET

BASE_URL is the emulator's HTTPS address; its self-signed certificate is trusted through
REQUESTS_CA_BUNDLE (set by the Rust test), so TLS verification stays on. simple-salesforce
always builds https:// URLs from the instance host, hence HTTPS.

Steps: SOAP username/password login (the library's default login, via its documented
`scratch_url` option that avoids DNS), OAuth client-credentials login (Basic auth), create,
upsert by external id (201 then 200), sObject Collections create through `restful`,
query_all over several pages, composite with a reference through `restful`, and a
Bulk API 2.0 upsert with result retrieval. Prints one JSON summary line; exits non-zero
on the first failed check.
"""

import json
import sys

import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

VERSION = "62.0"


def check(cond, what):
    if not cond:
        print(f"CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    base, username, password, client_id, client_secret = sys.argv[1:6]
    session = requests.Session()
    host = base.split("://", 1)[1]

    # 1. SOAP login (username + password + security token, empty here).
    session_id, instance = SalesforceLogin(
        username=username,
        password=password,
        security_token="",
        scratch_url=base,
        sf_version=VERSION,
        session=session,
    )
    check(instance == host, f"SOAP login instance {instance!r} == {host!r}")

    # A wrong password is refused with the SOAP fault the library understands.
    try:
        SalesforceLogin(username=username, password="wrong", security_token="",
                        scratch_url=base, sf_version=VERSION, session=session)
        check(False, "wrong password must fail")
    except SalesforceAuthenticationFailed as exc:
        check(exc.code == "INVALID_LOGIN", f"INVALID_LOGIN fault code, got {exc.code!r}")

    # 2. Client-credentials login. The library builds https://{domain}.salesforce.com/...;
    # a domain ending in a query string keeps the path pointing at the emulator.
    token, cc_instance = SalesforceLogin(
        consumer_key=client_id,
        consumer_secret=client_secret,
        domain=f"{host}/services/oauth2/token?d=",
        sf_version=VERSION,
        session=session,
    )
    check(cc_instance == host, f"client-credentials instance {cc_instance!r}")

    sf = Salesforce(session_id=session_id, instance=instance, session=session, version=VERSION)

    # 3. Create.
    created = sf.Account.create({"Name": "Py Acme"})
    check(created["success"] is True and created["id"].startswith("001"), f"create: {created}")

    # 4. Upsert by external id: 201 then 200.
    st1 = sf.Account.upsert("TwoCheckout_Customer_Ref__c/PY-1", {"Name": "Py Upsert"})
    st2 = sf.Account.upsert("TwoCheckout_Customer_Ref__c/PY-1", {"Name": "Py Upsert 2"})
    check((st1, st2) == (201, 200), f"upsert statuses {(st1, st2)}")
    by_ext = sf.Account.get_by_custom_id("TwoCheckout_Customer_Ref__c", "PY-1")
    check(by_ext["Name"] == "Py Upsert 2", f"get_by_custom_id: {by_ext['Name']}")

    # 5. sObject Collections create (through restful), 3 requests of up to 200.
    total_new = 450
    ids = []
    for start in range(0, total_new, 200):
        recs = [{"attributes": {"type": "Account"}, "Name": f"Bulkish {i:04d}"}
                for i in range(start, min(start + 200, total_new))]
        res = sf.restful("composite/sobjects", method="POST",
                         json={"allOrNone": True, "records": recs})
        check(all(r["success"] for r in res), "collections create all succeeded")
        ids.extend(r["id"] for r in res)
    check(len(ids) == total_new, "450 ids")

    # 6. query_all across pages (the emulator's page size is 200 in this test).
    result = sf.query_all("SELECT Id, Name FROM Account WHERE Name LIKE 'Bulkish%' ORDER BY Name")
    check(result["totalSize"] == total_new, f"query_all totalSize {result['totalSize']}")
    check(len(result["records"]) == total_new, f"query_all records {len(result['records'])}")
    check(result["records"][0]["Name"] == "Bulkish 0000", "query_all order")

    # 7. Composite with a reference.
    comp = sf.restful("composite", method="POST", json={
        "allOrNone": True,
        "compositeRequest": [
            {"method": "PATCH",
             "url": f"/services/data/v{VERSION}/sobjects/Account/TwoCheckout_Customer_Ref__c/PY-2",
             "referenceId": "acct", "body": {"Name": "Py Composite"}},
            {"method": "POST", "url": f"/services/data/v{VERSION}/sobjects/Contact",
             "referenceId": "con",
             "body": {"LastName": "Composite", "AccountId": "@{acct.id}"}},
        ]})
    codes = [r["httpStatusCode"] for r in comp["compositeResponse"]]
    check(codes == [201, 201], f"composite codes {codes}")

    # 8. Bulk API 2.0 upsert.
    rows = [{"TwoCheckout_Customer_Ref__c": f"BULK-{i}", "LastName": f"Bulk {i}",
             "Email": f"bulk{i}@example.com"} for i in range(25)]
    rows.append({"TwoCheckout_Customer_Ref__c": "BULK-BAD", "LastName": "", "Email": "x@example.com"})
    results = sf.bulk2.Contact.upsert(records=rows, external_id_field="TwoCheckout_Customer_Ref__c", wait=0.05)
    check(len(results) == 1, f"one bulk job: {results}")
    job = results[0]
    check(job["numberRecordsProcessed"] == 26 and job["numberRecordsFailed"] == 1, f"bulk counts {job}")
    ok_csv = sf.bulk2.Contact.get_successful_records(job["job_id"])
    check(ok_csv.splitlines()[0].startswith('"sf__Id","sf__Created"'), "successful results header")
    check(len(ok_csv.strip().splitlines()) == 26, "25 successful rows + header")
    bad_csv = sf.bulk2.Contact.get_failed_records(job["job_id"])
    check("REQUIRED_FIELD_MISSING" in bad_csv, "failed results carry the error")

    # API usage header parsed by the library.
    usage = sf.api_usage.get("api-usage")
    check(usage is not None and usage.used > 0, f"api usage parsed: {sf.api_usage}")

    print(json.dumps({"ok": True, "accounts": total_new + 3, "bulk_job": job["job_id"],
                      "api_usage": usage.used}))


if __name__ == "__main__":
    main()
