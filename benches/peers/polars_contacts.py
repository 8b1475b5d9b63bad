"""Polars doing the work of benches/contacts.toml: read every column as text, cast, write CSV (or
Parquet with zstd, its default, when the destination ends in .parquet)."""
import sys
import polars as pl

src, dst = sys.argv[1], sys.argv[2]
df = pl.read_csv(src, infer_schema=False, null_values=["", "NULL"])
truthy = {"true": True, "t": True, "yes": True, "y": True, "1": True,
          "false": False, "f": False, "no": False, "n": False, "0": False}
out = df.select(
    pl.col("Id").alias("id"),
    pl.col("AccountId").alias("account_id"),
    pl.col("Salutation").alias("salutation"),
    pl.col("FirstName").str.strip_chars().alias("first_name"),
    pl.col("LastName").str.strip_chars().alias("last_name"),
    pl.col("Email").str.to_lowercase().alias("email"),
    pl.col("Phone").alias("phone"),
    pl.col("MobilePhone").alias("mobile"),
    pl.col("MailingStreet").alias("street"),
    pl.col("MailingCity").alias("city"),
    pl.col("MailingPostalCode").alias("postal_code"),
    pl.col("MailingCountry").alias("country"),
    pl.col("Birthdate").str.strptime(pl.Date, "%m/%d/%Y").alias("birthdate"),
    pl.col("LeadSource").alias("lead_source"),
    pl.col("HasOptedOutOfEmail").str.to_lowercase().replace_strict(truthy, return_dtype=pl.Boolean).alias("email_opt_out"),
    pl.col("AnnualIncome__c").cast(pl.Decimal(12, 2)).alias("annual_income"),
    pl.col("Score__c").cast(pl.Float64).alias("score"),
    pl.col("Status__c").alias("status"),
    pl.col("CreatedDate").str.strptime(pl.Datetime("ms", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z").alias("created_at"),
    pl.col("LastActivityDate").str.strptime(pl.Date, "%Y-%m-%d").alias("last_activity"),
)
if dst.endswith(".parquet"):
    out.write_parquet(dst, compression="zstd")
else:
    out.write_csv(dst)
print(out.height, file=sys.stderr)
