# reporter: the image a CronJob, a systemd unit or an Airflow task runs `reporter schedule --once` from.
# Noto Sans (+ Symbols, both in fonts-noto-core) for Latin text and arrows, Noto CJK for Chinese text in PDFs; Pango and HarfBuzz subsetting for WeasyPrint.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      fonts-noto-core fonts-noto-cjk fontconfig libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
 && rm -rf /var/lib/apt/lists/*

# Editable install: the built-in report_templates/ are found next to the package's source tree.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY reporter ./reporter
COPY report_templates ./report_templates
COPY configs ./configs
RUN pip install --no-cache-dir -e /app

RUN useradd --create-home --uid 10001 reporter
USER reporter
# The project (configs/, data/, output/) is mounted here; ledger_url: ${REPORTER_LEDGER_URL}.
WORKDIR /project

ENTRYPOINT ["reporter"]
CMD ["schedule", "--once", "-p", "/project", "--log-format", "json"]
