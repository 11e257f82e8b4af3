# The dashboard (master): broker + web. Workers use the same image (see docker-compose.yml).
FROM python:3.11-slim

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
ENV ARCHITECT_DATA_DIR=/app/data
# web, then the four bus ports (heartbeat, work, control, events)
EXPOSE 8080 5555 5556 5557 5558

CMD ["python", "app.py", "--host", "0.0.0.0"]
