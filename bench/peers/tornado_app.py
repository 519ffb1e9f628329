"""The Tornado peer: one process, one IOLoop; send_task on the loop, the blocking .get in Tornado's default thread pool."""
import sys

import tornado.ioloop
import tornado.web
from celery.exceptions import TimeoutError as CeleryTimeout

from celery_app import app as celery


def task_args(request):
    query = {k: v[0].decode('utf-8') for k, v in request.query_arguments.items()}
    return [dict(request.headers), query, request.body.decode('utf-8')]


def send_and_wait(args):
    # The whole call runs in the pool thread: Celery's rpc:// result consumer is per thread.
    return celery.send_task('api.core.main', args=args).get(timeout=5)


class Notify(tornado.web.RequestHandler):
    def post(self):
        result = celery.send_task('api.core.main', args=task_args(self.request))
        self.set_status(202)
        self.write({'task_id': result.id})


class Order(tornado.web.RequestHandler):
    async def post(self):
        loop = tornado.ioloop.IOLoop.current()
        try:
            reply = await loop.run_in_executor(None, send_and_wait, task_args(self.request))
        except CeleryTimeout:
            self.set_status(504)
            self.write('timeout')
            return
        self.set_header('Content-Type', 'application/xml')
        self.write(reply)


class Health(tornado.web.RequestHandler):
    def get(self):
        self.write('ok')


if __name__ == '__main__':
    app = tornado.web.Application([(r'/notify', Notify), (r'/order', Order), (r'/healthz', Health)])
    app.listen(int(sys.argv[1]), address='127.0.0.1')
    tornado.ioloop.IOLoop.current().start()
