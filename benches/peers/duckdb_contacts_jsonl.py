"""DuckDB doing the work of benches/contacts-jsonl.toml: read the JSON Lines dump, cast, write CSV."""
import sys
import duckdb

src, dst, threads = sys.argv[1], sys.argv[2], sys.argv[3]
cols = ["Id", "AccountId", "Salutation", "FirstName", "LastName", "Email", "Phone", "MobilePhone",
        "MailingStreet", "MailingCity", "MailingPostalCode", "MailingCountry", "Birthdate", "LeadSource",
        "HasOptedOutOfEmail", "AnnualIncome__c", "Score__c", "Status__c", "CreatedDate",
        "LastActivityDate", "Description"]
columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
con = duckdb.connect()
con.execute(f"SET threads = {int(threads)}")
con.execute(f"""
COPY (
  SELECT Id AS id, AccountId AS account_id, Salutation AS salutation,
         trim(FirstName) AS first_name, trim(LastName) AS last_name, lower(Email) AS email,
         Phone AS phone, MobilePhone AS mobile, MailingStreet AS street, MailingCity AS city,
         MailingPostalCode AS postal_code, MailingCountry AS country,
         strptime(Birthdate, '%m/%d/%Y')::DATE AS birthdate,
         LeadSource AS lead_source,
         CASE lower(HasOptedOutOfEmail) WHEN 'true' THEN true WHEN 't' THEN true WHEN 'yes' THEN true
              WHEN 'y' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN 'f' THEN false
              WHEN 'no' THEN false WHEN 'n' THEN false WHEN '0' THEN false END AS email_opt_out,
         CAST(AnnualIncome__c AS DECIMAL(12,2)) AS annual_income,
         CAST(Score__c AS DOUBLE) AS score, Status__c AS status,
         strptime(CreatedDate, '%Y-%m-%dT%H:%M:%S.%g%z') AS created_at,
         CAST(LastActivityDate AS DATE) AS last_activity
  FROM read_json('{src}', format = 'newline_delimited', columns = {columns})
) TO '{dst}' (HEADER)
""")
