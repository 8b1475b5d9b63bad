"""Python lxml `iterparse` doing the work of benches/contacts-xml.toml: stream the XML, apply the same
cleaning and casts, write CSV. Elements are cleared as they are read, so memory stays bounded."""
import csv
import sys
from datetime import datetime, timezone
from decimal import Decimal

from lxml import etree

src, dst = sys.argv[1], sys.argv[2]
truthy = {"true": "true", "t": "true", "yes": "true", "y": "true", "1": "true",
          "false": "false", "f": "false", "no": "false", "n": "false", "0": "false"}
out_cols = [("Id", "id"), ("AccountId", "account_id"), ("Salutation", "salutation"),
            ("FirstName", "first_name"), ("LastName", "last_name"), ("Email", "email"),
            ("Phone", "phone"), ("MobilePhone", "mobile"), ("MailingStreet", "street"),
            ("MailingCity", "city"), ("MailingPostalCode", "postal_code"), ("MailingCountry", "country"),
            ("Birthdate", "birthdate"), ("LeadSource", "lead_source"), ("HasOptedOutOfEmail", "email_opt_out"),
            ("AnnualIncome__c", "annual_income"), ("Score__c", "score"), ("Status__c", "status"),
            ("CreatedDate", "created_at"), ("LastActivityDate", "last_activity")]


def cast(tag, v):
    if v is None or v == "":
        return ""
    if tag in ("FirstName", "LastName"):
        return v.strip()
    if tag == "Email":
        return v.lower()
    if tag == "Birthdate":
        return datetime.strptime(v, "%m/%d/%Y").date().isoformat()
    if tag == "HasOptedOutOfEmail":
        return truthy[v.lower()]
    if tag == "AnnualIncome__c":
        return str(Decimal(v).quantize(Decimal("0.01")))
    if tag == "Score__c":
        return repr(float(v))
    if tag == "CreatedDate":
        return datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return v


n = 0
with open(dst, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow([o for _, o in out_cols])
    for _, el in etree.iterparse(src, events=("end",), tag="Contact"):
        vals = {c.tag: c.text for c in el}
        w.writerow([cast(t, vals.get(t)) for t, _ in out_cols])
        el.clear()
        while el.getprevious() is not None:
            del el.getparent()[0]
        n += 1
print(n, file=sys.stderr)
