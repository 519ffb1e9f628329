-- wrk script: POST a ~1 KiB WeChat Pay style notification, a unique Idempotency-Key per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
local pad = string.rep("x", 560)
local template = [==[<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><attach><![CDATA[支付测试]]></attach><bank_type><![CDATA[CFT]]></bank_type><fee_type><![CDATA[CNY]]></fee_type><is_subscribe><![CDATA[Y]]></is_subscribe><mch_id><![CDATA[10000100]]></mch_id><nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str><openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid><out_trade_no><![CDATA[%d]]></out_trade_no><result_code><![CDATA[SUCCESS]]></result_code><MsgType>pay</MsgType><pad>%s</pad></xml>]==]
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function request()
  counter = counter + 1
  local body = string.format(template, counter, pad)
  wrk.headers["Idempotency-Key"] = string.format("wrk-%d-%d-%d", tid or 0, os.time(), counter)
  return wrk.format(nil, nil, nil, body)
end
