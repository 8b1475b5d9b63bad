"""Makes the second snapshot of a diff benchmark: 1 % of rows changed (LastName), 1 % deleted, 1 % new
rows inserted (copies of earlier rows under new ids, so that they pass the contacts mapping too), with
a fixed seed. Usage: python3 benches/mutate.py OLD.csv NEW.csv"""
import csv
import random
import sys

random.seed(42)
src, dst = sys.argv[1], sys.argv[2]
with open(src, newline="", encoding="utf-8") as f, open(dst, "w", newline="", encoding="utf-8") as g:
    r = csv.reader(f)
    w = csv.writer(g, lineterminator="\n")
    header = next(r)
    w.writerow(header)
    last = header.index("LastName")
    n = 0
    models = []
    for row in r:
        n += 1
        if len(models) < 100:
            models.append(list(row))
        x = random.random()
        if x < 0.01:
            continue  # deleted
        if x < 0.02:
            row[last] = row[last] + "-changed"
        w.writerow(row)
    for i in range(n // 100):
        row = list(models[i % len(models)])
        row[0] = "003NEW" + str(i).zfill(12)
        w.writerow(row)
