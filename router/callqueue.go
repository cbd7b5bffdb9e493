package router

// callQueue is a FIFO ring of calls; nil entries stand for ASKING, whose
// reply is dropped.
type callQueue struct {
	buf  []*call
	head int
	n    int
}

func (q *callQueue) push(cl *call) {
	if q.n == len(q.buf) {
		grown := make([]*call, max(64, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = cl
	q.n++
}

func (q *callQueue) pop() *call {
	cl := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	return cl
}

// popTail removes the newest call.
func (q *callQueue) popTail() *call {
	q.n--
	i := (q.head + q.n) & (len(q.buf) - 1)
	cl := q.buf[i]
	q.buf[i] = nil
	return cl
}

// peek is the oldest call; at(i) the i-th oldest.
func (q *callQueue) peek() *call { return q.buf[q.head] }

func (q *callQueue) at(i int) *call { return q.buf[(q.head+i)&(len(q.buf)-1)] }
