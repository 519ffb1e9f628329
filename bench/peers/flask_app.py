"""The Flask peer (served by gevent's WSGIServer and by gunicorn): one view per scenario, each calling Celery's send_task as the stacks the bridge replaces did."""
from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Flask, jsonify, request

from celery_app import app as celery

app = Flask(__name__)


def task_args():
    return [dict(request.headers), request.args.to_dict(), request.get_data(as_text=True)]


@app.post('/notify')
def notify():
    """Fire and forget: answer as soon as send_task returned (confirmed or not, per BENCH_CONFIRM)."""
    result = celery.send_task('api.core.main', args=task_args())
    return jsonify(task_id=result.id), 202


@app.post('/order')
def order():
    """Blocking: wait for the task's result like users of the rpc:// backend do."""
    result = celery.send_task('api.core.main', args=task_args())
    try:
        return result.get(timeout=5), 200, {'Content-Type': 'application/xml'}
    except CeleryTimeout:
        return 'timeout', 504


@app.get('/healthz')
def healthz():
    return 'ok'
