# Nhãn của bản tin, thông báo và bài viết WeChat: tiếng Việt.

## Record sections
organizers = Đơn vị tổ chức
sponsors = Đơn vị tài trợ
supporters = Đơn vị hỗ trợ
co-organizers = Đơn vị đồng tổ chức
attendees = Thành phần tham dự
topics = Chủ đề
highlights = Điểm nổi bật trong ý kiến chuyên gia
image = Hình ảnh

## Session formats
format-online = Trực tuyến
format-in-person = Trực tiếp
format-hybrid = Kết hợp (trực tiếp và trực tuyến)

## Digest subject
digest-subject = { $publisher }: { $count } báo cáo phiên họp

## Contact block
contact = Liên hệ
address = Địa chỉ
tel = Điện thoại
fax = Fax
email = Email
web = Trang web
wechat = WeChat ID

## Footer
why = Quý vị nhận được bản tin này vì quý vị có tên trong danh sách nhận thư của chúng tôi.
unsubscribe = Hủy đăng ký

## Notices
notice = Thông báo
urgent = Khẩn

## The web version and the public archive
view-in-browser = Xem trên trình duyệt
archive = Lưu trữ bản tin
archive-languages = Ngôn ngữ
archive-all = Tất cả ngôn ngữ
archive-older = Các bản tin cũ hơn
archive-newest = Các bản tin mới nhất
archive-feed = Nguồn cấp Atom
archive-empty = Chưa có nội dung nào được đăng tại đây.
