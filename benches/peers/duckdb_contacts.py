"""DuckDB doing the work of benches/contacts.toml: read every column as text, cast, write CSV (or
Parquet with zstd when the destination ends in .parquet)."""
import sys
import duckdb

src, dst, threads = sys.argv[1], sys.argv[2], sys.argv[3]
options = "FORMAT parquet, COMPRESSION zstd" if dst.endswith(".parquet") else "HEADER"
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
  FROM read_csv('{src}', all_varchar = true, header = true, nullstr = ['', 'NULL'])
) TO '{dst}' ({options})
""")
